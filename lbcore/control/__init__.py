"""The control plane: what produces Specs and applies them to engines.

``lbcore.control.drivers`` holds the drivers that make an engine serve a Spec
(``drivers.native``: lbcore nodes; ``drivers.haproxy``: haproxy, optionally behind
stunnel).
"""
