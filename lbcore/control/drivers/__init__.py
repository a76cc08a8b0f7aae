"""Drivers: how the control plane makes an engine serve a Spec.

- ``native``: push a Spec to lbcore nodes (their agents) over mutual TLS.
- ``haproxy``: render a Spec to haproxy.cfg, a crt-list, certificate files and
  (when TLS is terminated by stunnel) stunnel.conf; run haproxy in master-worker
  mode and apply new revisions with seamless reloads or the runtime API.
"""
