"""Build hook for the optional Cython fast paths: lbcore/_fastpath/*.pyx, and the
request-path modules compiled from their own .py with the .pxd beside each (IN_PLACE).

Every compiled module has a pure-Python twin, so the package installs and runs
when Cython or a C compiler is missing: the extensions are then simply skipped.
"""
import glob
import os

from setuptools import setup

ext_modules = []
# Keep in step with lbcore._fastpath.COMPILED_IN_PLACE.
IN_PLACE = [
    "lbcore/l7/facts.py",
    "lbcore/l7/balance.py",
    "lbcore/l7/acl.py",
    "lbcore/l7/router.py",
    "lbcore/l7/_http1_state.py",
    "lbcore/l7/_http1_requests.py",
    "lbcore/l7/_http1_responses.py",
    "lbcore/proxy/stats.py",
    "lbcore/proxy/accesslog.py",
    "lbcore/proxy/accesslog_format.py",
    "lbcore/proxy/flow.py",
    "lbcore/proxy/runtime.py",
    "lbcore/proxy/backend.py",
    "lbcore/proxy/http.py",
]
if os.environ.get("LBCORE_NO_EXTENSIONS") != "1":
    sources = sorted(glob.glob("lbcore/_fastpath/*.pyx"))
    if sources:
        try:
            from Cython.Build import cythonize
        except ImportError:  # pragma: no cover - build without Cython
            cythonize = None
        if cythonize is not None:
            ext_modules = cythonize(
                sources,
                compiler_directives={"language_level": "3", "boundscheck": False, "wraparound": False},
            )
            # The request path, compiled from its own Python source with the augmenting
            # .pxd beside each module (lbcore._fastpath.COMPILED_IN_PLACE). Annotations
            # are for readers and mypy there; the .pxd alone gives the C types.
            ext_modules += cythonize(
                IN_PLACE,
                compiler_directives={"language_level": "3", "annotation_typing": False},
            )
            for extension in ext_modules:
                extension.optional = True  # no C compiler or headers: skipped, the pure twin serves

setup(ext_modules=ext_modules)
