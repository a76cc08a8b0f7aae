"""Cython twins of hot sans-IO code.

Each compiled module here has a pure-Python twin with the same interface; the
pure one is the reference. Set LBCORE_NO_EXTENSIONS=1 to force the pure twins.
"""

import os

USE_EXTENSIONS = os.environ.get("LBCORE_NO_EXTENSIONS", "") not in ("1", "true", "yes")
