"""The I/O engine: supervisor, workers, HTTP and TCP proxying, backend connection pools.

Uses lbcore.spec, lbcore.l7 and lbcore.tls; never imports lbcore.control.
"""
