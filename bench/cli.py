"""``python -m bench`` (or ``lbcore bench``): run the benchmark, write the results.

    python -m bench                       every scenario, 3 x 5 s each (about 13 minutes)
    python -m bench --quick               every scenario briefly (CI: proves the harness works)
    python -m bench --scenario keepalive --scenario close
    python -m bench --list                the scenarios
    python -m bench --profile [SCENARIO]  py-spy on an lbcore worker under a scenario's load (keepalive)
    python -m bench --perf [SCENARIO]     CPU per request by library and system call, servers side by side

Results go to ``bench/results/<UTC timestamp>/results.{json,md,png}`` (``--out`` to
choose); a full run with the defaults (every scenario and server, 3 x 5 s, 1 worker,
access logs on, default output) also updates ``bench/results/latest.{json,md,png}``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

from bench import report
from bench.machine import stale_build
from bench.run import Settings, run
from bench.scenarios import SCENARIOS, by_name

__all__ = ["main"]

RESULTS = Path(__file__).resolve().parent / "results"
NEEDED = ("wrk", "taskset", "openssl")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench", description="lbcore vs haproxy, nginx, stunnel and a naive "
                                "asyncio proxy, per server CPU-second")
    p.add_argument("--quick", action="store_true", help="every scenario briefly: 1 run of 1 s, 300 idle connections")
    p.add_argument("--scenario", action="append", metavar="NAME", help="run only this scenario (repeatable)")
    p.add_argument("--list", action="store_true", help="list the scenarios and exit")
    p.add_argument("--servers", help="only these servers, comma-separated (lbcore,haproxy,naive,nginx,stunnel)")
    p.add_argument("--workers", type=int, default=1, help="lbcore workers and haproxy threads (default 1)")
    p.add_argument("--reps", type=int, help="repetitions per server and scenario (default 3; quick 1)")
    p.add_argument("--seconds", type=int, help="seconds per measured run (default 5; quick 1)")
    p.add_argument("--warmup", type=int, help="seconds of unmeasured load before the runs (default 1; quick 0)")
    p.add_argument("--idle-count", type=int, help="idle connections (default 10000; quick 300)")
    p.add_argument("--no-access-log", action="store_true", help="no access logs (default: on, to a syslog UDP port)")
    p.add_argument("--access-log-tcp", action="store_true",
                   help="lbcore and haproxy log over TCP (octet-counted syslog; haproxy through a ring), "
                        "read by the harness; nginx stays on UDP")
    p.add_argument("--load-cpu", default="0", help="CPU for wrk, the backend and the harness (default 0)")
    p.add_argument("--server-cpu", default="1", help="CPU for the server under test (default 1)")
    p.add_argument("--out", type=Path, help="results directory (default bench/results/<timestamp>)")
    p.add_argument("--keep-workdir", action="store_true", help="keep configurations and server logs")
    p.add_argument("--profile", nargs="?", const="keepalive", metavar="SCENARIO",
                   help="profile an lbcore worker with py-spy under a scenario's load (default keepalive)")
    p.add_argument("--profile-seconds", type=int, default=20)
    p.add_argument("--perf", nargs="?", const="keepalive", metavar="SCENARIO",
                   help="perf + strace on lbcore, haproxy and the naive proxy (or --servers) under a scenario's "
                        "load: CPU per request by shared object and system calls per request (default keepalive)")
    p.add_argument("--perf-seconds", type=int, default=5)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.list:
        for scenario in SCENARIOS:
            servers = ", ".join(scenario.servers) if scenario.servers else "-"
            print(f"{scenario.name:16s} {scenario.title}  [{servers}]")
        return 0
    stale = stale_build()
    if stale:
        print(f"refusing to measure a stale build: {stale}", file=sys.stderr)
        return 2
    missing = [tool for tool in NEEDED if shutil.which(tool) is None]
    if missing:
        print(f"missing: {', '.join(missing)} (Debian: apt-get install wrk util-linux openssl; or `make deps`)",
              file=sys.stderr)
        return 2
    if (os.cpu_count() or 1) < 2 and args.server_cpu == "1":
        print("one CPU only: the server shares CPU 0 with the load generator (figures per CPU-second still hold)",
              file=sys.stderr)
        args.server_cpu = "0"
    if args.profile or args.perf:
        try:
            scenario = by_name(args.profile or args.perf)
        except KeyError as exc:
            print(exc.args[0], file=sys.stderr)
            return 2
        if args.profile:
            from bench.profile import profile

            return profile(scenario, args.out or RESULTS, seconds=args.profile_seconds, workers=args.workers,
                           load_cpu=args.load_cpu, server_cpu=args.server_cpu)
        from bench.perfsplit import perf_split

        return perf_split(scenario, args.out or RESULTS, labels=args.servers.split(",") if args.servers else None,
                          seconds=args.perf_seconds, workers=args.workers, load_cpu=args.load_cpu,
                          server_cpu=args.server_cpu, access_log=not args.no_access_log)
    try:
        scenarios = [by_name(n) for name in args.scenario for n in name.split(",")] if args.scenario else list(SCENARIOS)
    except KeyError as exc:
        print(exc.args[0], file=sys.stderr)
        return 2
    quick = args.quick
    settings = Settings(
        scenarios=scenarios,
        quick=quick,
        reps=args.reps or (1 if quick else 3),
        seconds=args.seconds or (1 if quick else 5),
        warmup=args.warmup if args.warmup is not None else (0 if quick else 1),
        workers=args.workers,
        idle_count=args.idle_count or (300 if quick else None),
        load_cpu=args.load_cpu,
        server_cpu=args.server_cpu,
        speed_seconds=1 if quick else 2,
        time_wait_wait=5.0 if quick else 30.0,
        servers=set(args.servers.split(",")) if args.servers else None,
        access_log=not args.no_access_log,
        access_log_tcp=args.access_log_tcp,
        keep_workdir=args.keep_workdir,
    )
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    out = args.out or RESULTS / (stamp + ("-quick" if quick else ""))
    # Only a run with the defaults replaces latest.*: the committed reference figures.
    full = (not quick and args.scenario is None and args.servers is None and args.out is None
            and args.workers == 1 and not args.no_access_log and not args.access_log_tcp and args.reps is None and args.seconds is None)
    command = ["python", "-m", "bench", *(argv if argv is not None else sys.argv[1:])]
    results = run(settings, out, command)
    written = report.write(results, out, RESULTS if full else None)
    print()
    print((out / "results.md").read_text())
    print("written: " + ", ".join(str(p) for p in written))
    figures = sum(1 for s in results["scenarios"] for e in s.get("servers", {}).values()
                  if e.get("median") is not None or (e.get("idle") or {}).get("bytes_per_connection") is not None)
    return 0 if figures else 1
