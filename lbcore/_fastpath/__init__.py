"""Cython twins of hot code.

Each compiled module here has a pure-Python twin with the same interface; the
pure one is the reference. Set LBCORE_NO_EXTENSIONS=1 to force the pure twins.

The engine's request path (``COMPILED_IN_PLACE``) is compiled from its own Python
source instead: Cython builds each of those modules with the augmenting ``.pxd``
beside it, which makes its classes extension types with C fields and direct calls
between their methods. The ``.py`` is then the pure twin, run by the interpreter,
and the extension built next to it the compiled one. The two cannot drift apart:
they are one source. Python imports an extension before a ``.py`` of the same name,
so under LBCORE_NO_EXTENSIONS a finder (installed when ``lbcore`` is imported)
hands out the source instead.
"""

import importlib
import importlib.abc
import importlib.util
import os
import sys
from types import ModuleType

USE_EXTENSIONS = os.environ.get("LBCORE_NO_EXTENSIONS", "") not in ("1", "true", "yes")

COMPILED_IN_PLACE = (
    "lbcore.l7.facts",
    "lbcore.l7._http1_state",
    "lbcore.l7._http1_requests",
    "lbcore.l7._http1_responses",
    "lbcore.proxy.stats",
    "lbcore.proxy.flow",
    "lbcore.proxy.backend",
    "lbcore.proxy.http",
)


class _SourceTwins(importlib.abc.MetaPathFinder):
    """Imports the modules of COMPILED_IN_PLACE from their ``.py``, built or not."""

    def find_spec(self, name, path=None, target=None):  # noqa: ANN001 - importlib's protocol
        if name not in COMPILED_IN_PLACE:
            return None
        for entry in path or ():
            source = os.path.join(entry, name.rpartition(".")[2] + ".py")
            if os.path.isfile(source):
                return importlib.util.spec_from_file_location(name, source)
        return None


def prefer_sources() -> None:
    """Under LBCORE_NO_EXTENSIONS, make COMPILED_IN_PLACE import from source (idempotent)."""
    if not USE_EXTENSIONS and not any(isinstance(f, _SourceTwins) for f in sys.meta_path):
        sys.meta_path.insert(0, _SourceTwins())


def implementation(module: ModuleType) -> str:
    """"compiled" for a module loaded from an extension, "pure" for Python source."""
    return "pure" if (getattr(module, "__file__", None) or "").endswith(".py") else "compiled"


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
