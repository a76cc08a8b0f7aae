"""The harness refuses to measure a checkout whose build is not its code."""

from __future__ import annotations

import importlib.machinery
import os

import pytest

from bench import cli, machine
from lbcore import _fastpath


BUILT = "_twin" + importlib.machinery.EXTENSION_SUFFIXES[0]  # this interpreter's name for it


@pytest.fixture
def fastpath_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(_fastpath, "stale_builds", lambda: [])
    monkeypatch.setattr(_fastpath, "USE_EXTENSIONS", True)
    (tmp_path / "_twin.pyx").write_text("# source\n")
    (tmp_path / BUILT).write_bytes(b"built")
    return tmp_path


def age(path, seconds):
    stat = path.stat()
    os.utime(path, (stat.st_atime - seconds, stat.st_mtime - seconds))


def test_a_build_newer_than_its_sources_is_measured(fastpath_dir):
    age(fastpath_dir / "_twin.pyx", 60)
    assert machine.stale_build(fastpath_dir) is None


def test_a_pyx_or_pxd_edited_since_built_is_named(fastpath_dir):
    age(fastpath_dir / BUILT, 60)
    assert "lbcore._fastpath._twin: edited since built" in machine.stale_build(fastpath_dir)
    age(fastpath_dir / "_twin.pyx", 120)
    (fastpath_dir / "_twin.pxd").write_text("# declarations\n")
    assert "lbcore._fastpath._twin" in machine.stale_build(fastpath_dir)


def test_a_shared_pxd_edited_since_built_makes_every_extension_stale(fastpath_dir):
    age(fastpath_dir / "_twin.pyx", 120)
    age(fastpath_dir / BUILT, 60)
    (fastpath_dir / "_inline_helpers.pxd").write_text("cdef inline int one(): return 1\n")
    assert "lbcore._fastpath._twin: edited since built" in machine.stale_build(fastpath_dir)


def test_an_extension_not_built_is_named(fastpath_dir):
    age(fastpath_dir / "_twin.pyx", 60)
    (fastpath_dir / "_other.pyx").write_text("# never built\n")
    assert machine.stale_build(fastpath_dir).startswith("lbcore._fastpath._other: not built")


def test_a_request_path_module_edited_since_built_is_named(fastpath_dir, monkeypatch):
    age(fastpath_dir / "_twin.pyx", 60)
    monkeypatch.setattr(_fastpath, "stale_builds", lambda: ["lbcore.proxy.http"])
    assert machine.stale_build(fastpath_dir).startswith("lbcore.proxy.http: edited since built")


def test_the_pure_twins_asked_for_are_never_stale(fastpath_dir, monkeypatch):
    age(fastpath_dir / BUILT, 60)
    monkeypatch.setattr(_fastpath, "USE_EXTENSIONS", False)
    assert machine.stale_build(fastpath_dir) is None


def test_the_harness_refuses_a_stale_build(monkeypatch, capsys):
    monkeypatch.setattr(cli, "stale_build", lambda: "lbcore.proxy.http: edited since built; rebuild")
    assert cli.main(["--quick", "--scenario", "keepalive"]) == 2
    assert "refusing to measure a stale build: lbcore.proxy.http" in capsys.readouterr().err
