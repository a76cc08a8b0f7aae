"""Cython twins of hot sans-IO code.

Each compiled module here has a pure-Python twin with the same interface; the
pure one is the reference. Set LBCORE_NO_EXTENSIONS=1 to force the pure twins.
"""

import importlib
import os
from types import ModuleType

USE_EXTENSIONS = os.environ.get("LBCORE_NO_EXTENSIONS", "") not in ("1", "true", "yes")


def twins(pure: ModuleType, compiled_name: str) -> tuple[dict[str, ModuleType], ModuleType]:
    """({"pure": pure, "compiled": the built module}, the one to use) for a selector module.

    The compiled twin (``lbcore._fastpath.<compiled_name>``) is there only when it is built
    and LBCORE_NO_EXTENSIONS does not refuse it; it is then the one to use.
    """
    found = {"pure": pure}
    if USE_EXTENSIONS:
        try:
            found["compiled"] = importlib.import_module(f"{__name__}.{compiled_name}")
        except ImportError:  # not built: the pure twin serves
            pass
    return found, found.get("compiled", pure)
