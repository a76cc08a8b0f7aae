"""Drivers: serve a Spec with an engine other than lbcore's own.

- ``haproxy``: render a Spec to haproxy.cfg, a crt-list, certificate files and
  (when TLS is terminated by stunnel) stunnel.conf; run haproxy in master-worker
  mode and apply new revisions with seamless reloads or the runtime API.
"""
