"""``python -m bench --perf [SCENARIO]``: each server's CPU per request, by library and system call.

Where ``--profile`` looks inside an lbcore worker (py-spy), this puts the servers side
by side on what they all have: for each server of the scenario (default: lbcore,
haproxy and the naive proxy, as the scenario allows) it starts the nginx backend and
the server with the scenario's configuration, loads it with wrk and the scenario's
script, and

- samples the whole server process tree with ``perf record`` (cpu-clock, 2 kHz) while
  wrk runs: microseconds of CPU per request (or handshake) in each shared object
  (the kernel, libcrypto, libssl, libc, the interpreter, uvloop, the server binary)
  and in the kernel's busiest functions;
- counts the system calls per request with ``strace -c -f`` in a second run (strace
  slows the server; only the counts are used).

The tables go to ``bench/results/perf-SCENARIO.md`` (``--out`` to choose). Needs
``perf`` (Debian: linux-perf) and ``strace``; the figures are per request, so the
machine's noise moves them less than it moves rates. ``perf`` sees kernel symbols only
when ``/proc/sys/kernel/kptr_restrict`` allows it (as root it does).
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

from bench import servers
from bench.certs import make_cert, make_ticket_keys
from bench.configs import Frontend
from bench.load import bench_totals
from bench.oneoff import stage, wrk
from bench.run import LOGGING, Progress
from bench.scenarios import Scenario

__all__ = ["parse_perf_report", "parse_strace", "perf_split", "requests_of"]

FREQUENCY = 2000  # samples per second of CPU
DEFAULT_SERVERS = ("lbcore", "haproxy", "naive")
TOP_KERNEL = 10
_ROW = re.compile(r"^\s*([\d.]+)%\s+(\d+)\s+(.+?)\s*$")


def parse_perf_report(text: str) -> dict[str, int]:
    """Samples per key from ``perf report --stdio -n --sort KEY -g none`` (one key column)."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        m = _ROW.match(line)
        if m:
            key = m.group(3).removeprefix("[k] ").removeprefix("[.] ").strip()
            out[key] = out.get(key, 0) + int(m.group(2))
    return out


def parse_strace(text: str) -> dict[str, int]:
    """Calls per system call from ``strace -c`` output."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        fields = line.split()
        # % time, seconds, usecs/call, calls, [errors], syscall
        if len(fields) >= 5 and fields[3].isdigit() and fields[-1] != "total" and not fields[-1].startswith("-"):
            out[fields[-1]] = out.get(fields[-1], 0) + int(fields[3])
    return out


def requests_of(wrk_output: str) -> int:
    """What wrk counted: the BENCH_JSON line of the bench's Lua scripts, else its summary."""
    totals = bench_totals(wrk_output)
    if totals is not None:
        return int(totals["requests"])
    m = re.search(r"(\d+) requests in", wrk_output)
    if not m:
        raise ValueError(f"no request count in wrk's output: {wrk_output.strip()[-300:]!r}")
    return int(m.group(1))


def _attach(argv: list[str]) -> subprocess.Popen:
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    time.sleep(0.5)  # perf/strace attach before the load starts (not a synchronisation the figures rely on)
    return proc


def _stop(proc: subprocess.Popen) -> str:
    proc.send_signal(signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    return err or ""


def _measure(scenario: Scenario, running: servers.Running, workdir: Path, seconds: int, load_cpu: str,
             progress: Progress) -> dict:
    url = f"{running.fe.scheme}://127.0.0.1:{running.fe.port}{scenario.path}"
    pids = ",".join(str(pid) for pid in running.pids())
    data = workdir / f"{running.label}.perf"
    perf = _attach(["perf", "record", "-F", str(FREQUENCY), "-o", str(data), f"--pid={pids}"])
    load = wrk(scenario, url, seconds, load_cpu)
    out, _ = load.communicate(timeout=seconds + 60)
    _stop(perf)
    requests = requests_of(out)
    report = ["perf", "report", "-i", str(data), "--stdio", "-n", "--no-children", "-g", "none"]
    dsos = parse_perf_report(subprocess.run(report + ["--sort", "dso"], capture_output=True, text=True, check=True).stdout)
    kernel = parse_perf_report(subprocess.run(report + ["--sort", "sym", "--dsos", "[kernel.kallsyms]"],
                                              capture_output=True, text=True, check=True).stdout)
    progress(f"{scenario.name}: {running.label}: perf: {requests:,} requests, {sum(dsos.values()):,} samples")
    trace = workdir / f"{running.label}.strace"
    strace = _attach(["strace", "-c", "-f", "-o", str(trace)] + [a for pid in running.pids() for a in ("-p", str(pid))])
    load = wrk(scenario, url, seconds, load_cpu)
    out, _ = load.communicate(timeout=seconds + 60)
    _stop(strace)
    traced = requests_of(out)
    calls = parse_strace(trace.read_text()) if trace.exists() else {}
    progress(f"{scenario.name}: {running.label}: strace: {traced:,} requests, {sum(calls.values()):,} calls")
    us = 1e6 / FREQUENCY
    return {
        "requests": requests,
        "dso_us": {k: v * us / requests for k, v in dsos.items()},
        "kernel_us": {k: v * us / requests for k, v in kernel.items()},
        "syscalls": {k: v / traced for k, v in calls.items()} if traced else {},
    }


def render(scenario: Scenario, results: dict[str, dict], access_log: bool = True) -> str:
    labels = list(results)
    logs = "" if access_log or not scenario.access_log else " --no-access-log"
    lines = [f"# CPU per {scenario.unit.rstrip('s') if scenario.unit else 'request'}: {scenario.title}",
             "", (f"(generated by `python -m bench --perf {scenario.name}{logs}`: perf {FREQUENCY} Hz cpu-clock over "
                  "the whole server process tree; system calls from strace -c in a second run)"), ""]

    def table(title: str, key: str, fmt: str, top: int | None = None) -> None:
        totals: dict[str, float] = {}
        for label in labels:
            for name, value in results[label][key].items():
                totals[name] = max(totals.get(name, 0.0), value)
        names = sorted(totals, key=totals.get, reverse=True)[:top]
        lines.extend([f"## {title}", "", "| | " + " | ".join(labels) + " |", "|---|" + "---:|" * len(labels)])
        for name in names:
            cells = [fmt.format(results[label][key][name]) if name in results[label][key] else "–" for label in labels]
            lines.append(f"| `{name}` | " + " | ".join(cells) + " |")
        if key != "kernel_us":
            sums = [fmt.format(sum(results[label][key].values())) for label in labels]
            lines.append("| total | " + " | ".join(sums) + " |")
        lines.append("")

    table("µs of CPU per request, by shared object", "dso_us", "{:.1f}", 12)
    table(f"µs per request in the kernel's {TOP_KERNEL} busiest functions", "kernel_us", "{:.2f}", TOP_KERNEL)
    table("System calls per request", "syscalls", "{:.2f}", 20)
    lines.append("Requests measured: " + ", ".join(f"{label} {results[label]['requests']:,}" for label in labels))
    return "\n".join(lines) + "\n"


def perf_split(scenario: Scenario, results_dir: Path, *, labels: list[str] | None, seconds: int, workers: int,
               load_cpu: str, server_cpu: str, access_log: bool = True) -> int:
    """``access_log`` False: no server logs (``--no-access-log``), as in the throughput runs."""
    progress = Progress()
    logs = access_log and scenario.access_log
    missing = [tool for tool in ("perf", "strace") if shutil.which(tool) is None]
    if missing:
        print(f"missing: {', '.join(missing)} (Debian: apt-get install linux-perf strace)", flush=True)
        return 2
    if scenario.kind != "wrk":
        print(f"{scenario.name} is not a load scenario: pick one that runs wrk", flush=True)
        return 2
    allowed = scenario.servers or DEFAULT_SERVERS
    labels = [label for label in (labels or DEFAULT_SERVERS) if label in allowed]
    results: dict[str, dict] = {}
    with stage(load_cpu, "lbcore-perf-") as where:
        workdir = where.workdir
        cert = make_cert(workdir / "certs", scenario.tls) if scenario.tls else None
        keys = make_ticket_keys(workdir / "certs") if scenario.tls and scenario.resume else None
        for label in labels:
            spec = servers.parse_label(label, workers)
            fe = Frontend(port=where.ports.take(), backend_port=where.backend_port, workers=spec.workers,
                          acls=scenario.acls, tls=cert, resume=scenario.resume, ticket_keys=keys,
                          access_log_port=where.log_port if logs and spec.kind in LOGGING else None)
            running = servers.start(spec, fe, workdir / label, server_cpu)
            try:
                results[label] = _measure(scenario, running, workdir, seconds, load_cpu, progress)
            finally:
                running.stop()
    results_dir.mkdir(parents=True, exist_ok=True)
    path = results_dir / f"perf-{scenario.name}.md"
    text = render(scenario, results, access_log)
    path.write_text(text)
    print(text, flush=True)
    progress(f"written: {path}")
    return 0
