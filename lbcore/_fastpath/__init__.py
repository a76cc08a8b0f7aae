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
hands out the source instead; it does the same, with a warning, for a module whose
``.py`` or ``.pxd`` was edited after it was built.

So the in-place modules are compiled or pure as a group, while a ``.pyx`` here is
compiled whenever it is built: an in-place module may cimport a ``.pyx`` of this
package (``http.pxd`` cimports ``_events``), never the other way round. A ``.pyx``
that cimported an in-place class would meet the pure class when the twins are forced,
and Cython only warns when the instance it expects is smaller than the one it gets.
"""

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
import warnings
from types import ModuleType

USE_EXTENSIONS = os.environ.get("LBCORE_NO_EXTENSIONS", "") not in ("1", "true", "yes")

COMPILED_IN_PLACE = (
    "lbcore.l7.facts",
    "lbcore.l7.balance",
    "lbcore.l7.acl",
    "lbcore.l7.router",
    "lbcore.l7._http1_state",
    "lbcore.l7._http1_requests",
    "lbcore.l7._http1_responses",
    "lbcore.proxy.stats",
    "lbcore.proxy.accesslog",
    "lbcore.proxy.accesslog_format",
    "lbcore.proxy.flow",
    "lbcore.proxy.runtime",
    "lbcore.proxy.backend",
    "lbcore.proxy.http",
)


class _SourceTwins(importlib.abc.MetaPathFinder):
    """Imports the modules of COMPILED_IN_PLACE from their ``.py`` when the pure twins
    are forced, or when any of their extensions is older than its ``.py`` or ``.pxd``
    in a source checkout: an edited module then runs as edited, with a warning to
    rebuild, instead of as it was when last built.
    All of them or none: the compiled ones share their extension types. Decided at the
    first import of one of them, so a process that imports none pays nothing."""

    def __init__(self) -> None:
        self.from_source: bool | None = None if USE_EXTENSIONS else True

    def find_spec(self, name, path=None, target=None):  # noqa: ANN001 - importlib's protocol
        if name not in COMPILED_IN_PLACE:
            return None
        if self.from_source is None:
            self.from_source = _stale_builds()
        if not self.from_source:
            return None  # the usual finders: the extension when built, else the .py
        source = _source_of(name)
        return importlib.util.spec_from_file_location(name, source) if source else None


_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # .../lbcore


def _source_of(name: str) -> str | None:
    """The ``.py`` of a module of COMPILED_IN_PLACE, found from this package's place."""
    path = os.path.join(_PACKAGE, *name.split(".")[1:]) + ".py"
    return path if os.path.isfile(path) else None


def _in_checkout() -> bool:
    """lbcore runs from a source checkout (setup.py beside the package), where files are
    edited after a build; an installed package's file times say nothing (pip writes its
    files in any order)."""
    return os.path.isfile(os.path.join(os.path.dirname(_PACKAGE), "setup.py"))


def stale_builds() -> list[str]:
    """The modules of COMPILED_IN_PLACE whose source, in a checkout, is newer than
    their build: with any of them, every one runs from its source."""
    if not _in_checkout():
        return []
    stale = []
    for name in COMPILED_IN_PLACE:
        source = _source_of(name)
        if source is None:
            continue
        built = built_file(source)
        newest = max(os.path.getmtime(path) for path in (source, source[:-3] + ".pxd") if os.path.isfile(path))
        if built is not None and os.path.getmtime(built) < newest:
            stale.append(name)
    return stale


def built_file(source: str) -> str | None:
    """The extension this interpreter would load beside ``source`` (a .py or .pyx), if
    there is one."""
    stem = os.path.splitext(source)[0]
    return next((stem + suffix for suffix in importlib.machinery.EXTENSION_SUFFIXES
                 if os.path.isfile(stem + suffix)), None)


def _stale_builds() -> bool:
    stale = stale_builds()
    if stale:
        warnings.warn(
            f"{', '.join(stale)}: edited since built, so the request path runs from its Python "
            "source (rebuild with `pip install -e .` or `python setup.py build_ext --inplace`)",
            RuntimeWarning,
            stacklevel=3,
        )
    return bool(stale)


def prefer_sources() -> None:
    """Install the finder for COMPILED_IN_PLACE (idempotent): the source under
    LBCORE_NO_EXTENSIONS, or instead of a stale build."""
    if not any(isinstance(f, _SourceTwins) for f in sys.meta_path):
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
