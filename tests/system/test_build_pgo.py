"""``make pgo`` (scripts/build-pgo): the compiled modules rebuilt with a profile that
lbcore's own run under load wrote, in a copy of the source tree (the build is in
place, and this checkout's modules are loaded by the tests around this one)."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow

# The hot path's modules: each must have been run by the training, and built from its profile.
HOT = {
    "http": "lbcore/proxy/http",
    "_streams": "lbcore/_fastpath/_streams",
    "_heads": "lbcore/_fastpath/_heads",
    "_rewrite": "lbcore/_fastpath/_rewrite",
    "router": "lbcore/l7/router",
}


def _copy_tree(into: Path) -> Path:
    """What the build and the training need; the generated .c files keep their times,
    so Cython does not run again, and no built module is copied."""
    tree = into / "src"
    ignore = shutil.ignore_patterns("*.so", "__pycache__", "results", "build", "*.egg-info")
    for name in ("lbcore", "bench", "scripts"):
        shutil.copytree(ROOT / name, tree / name, ignore=ignore)
    for name in ("setup.py", "pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, tree / name)
    return tree


@pytest.mark.timeout(900)
def test_the_profile_guided_build_trains_on_load_and_uses_what_it_learned(tmp_path: Path) -> None:
    missing = [tool for tool in ("wrk", "nginx", "gcc", "readelf", "taskset") if shutil.which(tool) is None]
    assert not missing, f"make pgo needs {', '.join(missing)} (`make deps` installs them)"
    assert importlib.util.find_spec("Cython"), "make pgo needs Cython (the bench extra: `make install`)"
    tree = _copy_tree(tmp_path)
    done = subprocess.run(
        ["bash", "scripts/build-pgo"], cwd=tree, capture_output=True, text=True, timeout=840,
        # LBCORE_NO_EXTENSIONS would skip the build: not passed on
        env={**{k: v for k, v in os.environ.items() if k != "LBCORE_NO_EXTENSIONS"},
             "PYTHON": sys.executable, "LBCORE_PGO_SECONDS": "1"},
    )
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    assert "build-pgo: done" in done.stderr

    for name, source in HOT.items():
        # the training ran it: its counts are there ...
        profile = tree / "build/pgo" / f"{source}.gcda"
        assert profile.is_file() and profile.stat().st_size > 0, f"no profile for {name}"
        # ... and the module in place was built from them
        built = next((tree / source).parent.glob(f"{name}.cpython-*.so"))
        flags = subprocess.run(["readelf", "-p", ".GCC.command.line", str(built)],
                               capture_output=True, text=True, check=True).stdout
        assert "-fprofile-use" in flags and "-fprofile-generate" not in flags, name

    # The optimised build is the one the engine loads, compiled, not a pure twin.
    check = subprocess.run(
        [sys.executable, "-c",
         "import importlib, lbcore, lbcore._fastpath as f; "
         "assert lbcore.__file__.startswith(%r), lbcore.__file__; "
         "print(sorted(set(f.implementation(importlib.import_module(m)) for m in f.COMPILED_IN_PLACE)))"
         % str(tree)],
        cwd=tree, capture_output=True, text=True, timeout=60,
    )
    assert check.returncode == 0, check.stderr
    assert check.stdout.strip() == "['compiled']"

