"""lbcore: a load-balancer appliance engine."""

from lbcore import _fastpath

__version__ = "0.1.0"

# Before any engine module is imported: LBCORE_NO_EXTENSIONS also covers the modules
# compiled from their own source (lbcore._fastpath.COMPILED_IN_PLACE), and a module
# edited since it was built runs from its source.
_fastpath.prefer_sources()
