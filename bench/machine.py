"""What the results were measured on: CPU, cores, kernel, tool and library versions."""

from __future__ import annotations

import importlib

import os
import platform
import ssl
import subprocess
import sys
from importlib import metadata
from pathlib import Path

__all__ = ["describe", "stale_build"]

ROOT = Path(__file__).resolve().parents[1]
SYSCTLS = (
    "net/ipv4/tcp_tw_reuse",
    "net/ipv4/ip_local_port_range",
    "net/ipv4/tcp_max_tw_buckets",
    "net/core/somaxconn",
)


def _first_line(argv: list[str], prefix: str = "") -> str | None:
    """First non-empty output line of a version command (some print to stderr) that
    starts with ``prefix``."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    for line in (done.stdout + "\n" + done.stderr).splitlines():
        if line.strip() and line.strip().startswith(prefix):
            return line.strip()
    return None


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def _cpu_model() -> str:
    for line in (_read("/proc/cpuinfo") or "").splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _os_name() -> str:
    for line in (_read("/etc/os-release") or "").splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip('"')
    return platform.platform()


def _mem_total_mib() -> int | None:
    for line in (_read("/proc/meminfo") or "").splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024
    return None


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _interpreter() -> dict:
    """Which Python runs lbcore (the harness starts it with its own interpreter), and
    whether its interpreter loop lives in a shared libpython. That matters here: this
    machine's pyenv build (shared, no profile-guided or link-time optimisation) spends
    ~40% more time in the interpreter per request than Debian's python3.11, a static
    build with both (bench/results/20261128T2200Z-session18). sysconfig cannot tell PGO
    or LTO apart (Debian keeps those flags out of it), so the executable is named."""
    maps = _read("/proc/self/maps") or ""
    return {
        "executable": sys.executable,
        "base_executable": getattr(sys, "_base_executable", sys.executable),
        "implementation": f"{platform.python_implementation()} {platform.python_version()}",
        "libpython_shared": "libpython" in maps,
    }


def stale_build(fastpath_dir: Path | None = None) -> str | None:
    """Why this checkout's build would not measure its code, or None.

    An edited request-path module makes every one of them run from its Python source
    (lbcore._fastpath's finder, with a warning easy to miss in a run's output), and an
    edited .pyx runs as it was last built: either way a run would measure something
    else than the commit it names. Under LBCORE_NO_EXTENSIONS the pure twins are
    what is asked for, and nothing is stale."""
    from lbcore import _fastpath

    if not _fastpath.USE_EXTENSIONS or not (ROOT / "setup.py").is_file():
        return None
    stale = list(_fastpath.stale_builds())
    directory = fastpath_dir or Path(_fastpath.__file__).parent
    # Any .pxd may be cimported by any module (some hold inline code of their own):
    # each counts as an input of every extension.
    declarations = max((p.stat().st_mtime for p in directory.glob("*.pxd")), default=0.0)
    unbuilt = []
    for source in sorted(directory.glob("*.pyx")):
        built = _fastpath.built_file(str(source))
        if built is None:
            unbuilt.append(f"lbcore._fastpath.{source.stem}")
        elif os.path.getmtime(built) < max(source.stat().st_mtime, declarations):
            stale.append(f"lbcore._fastpath.{source.stem}")
    rebuild = ("rebuild (`python setup.py build_ext --inplace` or `pip install -e .`), or set "
               "LBCORE_NO_EXTENSIONS=1 to measure the pure twins")
    if unbuilt:
        return f"{', '.join(unbuilt)}: not built (its pure twin would run); {rebuild}"
    if stale:
        return f"{', '.join(stale)}: edited since built; {rebuild}"
    return None


def _lbcore() -> dict:
    """lbcore's version, commit (read-only git plumbing) and compiled fast paths."""
    from lbcore import __version__
    from lbcore import _fastpath

    fastpath = Path(_fastpath.__file__).parent
    commit = _first_line(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"])
    dirty = subprocess.run(["git", "-C", str(ROOT), "diff-index", "--quiet", "HEAD", "--"],
                           capture_output=True).returncode != 0 if commit else None
    return {
        "version": __version__,
        "commit": commit,
        "uncommitted_changes": dirty,
        "compiled_fastpaths": sorted(p.name for p in fastpath.glob("*.so")),
        # The request-path modules compiled from their own .py: which run compiled here.
        "compiled_in_place": {name: _fastpath.implementation(importlib.import_module(name))
                              for name in _fastpath.COMPILED_IN_PLACE},
        "extensions_enabled": _fastpath.USE_EXTENSIONS,
    }


def describe(pinning: dict[str, str]) -> dict:
    return {
        "cpu_model": _cpu_model(),
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "os": _os_name(),
        "memory_mib": _mem_total_mib(),
        "pinning": pinning,
        "sysctl": {name.replace("/", "."): _read(f"/proc/sys/{name}") for name in SYSCTLS},
        "versions": {
            "haproxy": _first_line(["haproxy", "-v"]),
            "nginx": _first_line(["nginx", "-v"]),
            "stunnel": _first_line(["stunnel4", "-version"], "stunnel "),
            "wrk": _first_line(["wrk", "-v"]),
            "openssl": _first_line(["openssl", "version"]),
            "python": platform.python_version(),
            "python_ssl": ssl.OPENSSL_VERSION,
            "uvloop": _version("uvloop"),
            "httptools": _version("httptools"),
            "cryptography": _version("cryptography"),
        },
        "python": _interpreter(),
        "lbcore": _lbcore(),
    }
