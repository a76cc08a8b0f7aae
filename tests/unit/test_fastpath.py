"""lbcore._fastpath: every compiled twin is built and chosen, and LBCORE_NO_EXTENSIONS forces the pure ones.

The twins' agreement is tested beside each one (test_http1_events, test_http1_fastlane, test_rewrite,
test_logline, test_tls_tickets, test_tlsconn, test_sockio, test_streams); this file checks the selection itself, so that a
build that silently lost its extensions fails here under CI instead of running the
whole suite on the pure twins.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

import lbcore._fastpath as fastpath

SELECTORS = ["events", "heads", "rewrite", "logline", "sslctx", "tlsconn", "sockio", "clock", "streams"]
SOURCES = sorted(p.stem for p in Path(fastpath.__file__).parent.glob("*.pyx"))


def test_every_compiled_module_has_a_selector():
    # _heads.pyx -> heads.py, _sslctx.pyx -> sslctx.py, ...
    assert sorted(name.lstrip("_") for name in SOURCES) == sorted(SELECTORS)


@pytest.mark.parametrize("name", SELECTORS)
def test_the_selector_offers_both_twins(name):
    selector = importlib.import_module(f"lbcore._fastpath.{name}")
    assert "pure" in selector.IMPLEMENTATIONS
    assert selector.IMPLEMENTATIONS["pure"].IMPLEMENTATION == "pure"
    if "compiled" not in selector.IMPLEMENTATIONS:
        if os.environ.get("CI") and fastpath.USE_EXTENSIONS:
            pytest.fail(f"lbcore._fastpath._{name} is not built (pip install -e . builds it)")
        pytest.skip(f"lbcore._fastpath._{name} is not built here")
    assert selector.IMPLEMENTATIONS["compiled"].IMPLEMENTATION == "compiled"
    expected = "compiled" if fastpath.USE_EXTENSIONS else "pure"
    assert selector.IMPLEMENTATION == expected


def test_the_environment_variable_forces_the_pure_twins():
    code = (
        "import importlib\n"
        f"for name in {SELECTORS!r}:\n"
        "    m = importlib.import_module('lbcore._fastpath.' + name)\n"
        "    print(name, m.IMPLEMENTATION)\n"
    )
    env = {**os.environ, "LBCORE_NO_EXTENSIONS": "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.split() == [word for name in SELECTORS for word in (name, "pure")]


# -- modules compiled from their own source (lbcore._fastpath.COMPILED_IN_PLACE) --------------


def test_setup_builds_exactly_the_modules_compiled_in_place():
    # setup.py's IN_PLACE list and the finder's COMPILED_IN_PLACE must name the same modules.
    import ast

    tree = ast.parse((Path(fastpath.__file__).parents[2] / "setup.py").read_text())
    listed = next(
        ast.literal_eval(node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "IN_PLACE" for t in node.targets)
    )
    assert [p.removesuffix(".py").replace("/", ".") for p in listed] == list(fastpath.COMPILED_IN_PLACE)


@pytest.mark.parametrize("name", fastpath.COMPILED_IN_PLACE)
def test_a_module_compiled_in_place_is_built_and_chosen(name):
    module = importlib.import_module(name)
    source = Path(module.__file__).with_name(name.rpartition(".")[2] + ".py")
    # The .pxd beside it, when there is one, declares its extension types; a module of
    # closures only (lbcore.l7.acl) has none and is compiled as it is.
    assert source.is_file()
    if not fastpath.USE_EXTENSIONS:
        assert fastpath.implementation(module) == "pure"
        return
    if fastpath.implementation(module) != "compiled":
        if os.environ.get("CI"):
            pytest.fail(f"{name} is not built (pip install -e . builds it)")
        pytest.skip(f"{name} is not built here")
    assert fastpath.implementation(module) == "compiled"


def test_the_environment_variable_imports_the_modules_compiled_in_place_from_source():
    code = (
        "import importlib, lbcore._fastpath as f\n"
        "for name in f.COMPILED_IN_PLACE:\n"
        "    m = importlib.import_module(name)\n"
        "    print(name, f.implementation(m), m.__file__.endswith('.py'))\n"
    )
    env = {**os.environ, "LBCORE_NO_EXTENSIONS": "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.split() == [word for name in fastpath.COMPILED_IN_PLACE for word in (name, "pure", "True")]


def test_a_module_edited_since_it_was_built_runs_from_source(tmp_path, monkeypatch):
    # In a source checkout an extension older than its .py or .pxd would run the code as
    # it was; all of COMPILED_IN_PLACE then runs from source.
    import importlib.machinery

    source = tmp_path / "mod.py"
    for suffix in (".py", ".pxd", importlib.machinery.EXTENSION_SUFFIXES[0]):
        source.with_suffix("").with_name("mod" + suffix).write_text("")
    built = tmp_path / ("mod" + importlib.machinery.EXTENSION_SUFFIXES[0])
    monkeypatch.setattr(fastpath, "COMPILED_IN_PLACE", ("lbcore.mod",))
    monkeypatch.setattr(fastpath, "_source_of", lambda name: str(source))
    monkeypatch.setattr(fastpath, "_in_checkout", lambda: True)

    os.utime(built, (2_000, 2_000))
    os.utime(source, (1_000, 1_000))
    os.utime(source.with_suffix(".pxd"), (1_000, 1_000))
    assert not fastpath._stale_builds()

    os.utime(source.with_suffix(".pxd"), (3_000, 3_000))  # the .pxd edited after the build
    with pytest.warns(RuntimeWarning, match="lbcore.mod: edited since built"):
        assert fastpath._stale_builds()

    monkeypatch.setattr(fastpath, "_in_checkout", lambda: False)  # installed: pip's file times say nothing
    assert not fastpath._stale_builds()


def test_the_tests_run_from_a_checkout_where_file_times_are_compared():
    # An installed package (no setup.py beside it) never compares: pip writes a wheel's
    # files in any order, so its .py may be newer than its extension.
    assert fastpath._in_checkout()
