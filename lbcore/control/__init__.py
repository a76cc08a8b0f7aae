"""The control plane: what produces Specs and applies them to engines.

``lbcore.control.drivers`` holds the drivers that serve a Spec with something other
than lbcore's own engine (``drivers.haproxy``: haproxy, optionally behind stunnel).
"""
