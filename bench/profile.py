"""``python -m bench --profile [SCENARIO]``: where an lbcore worker spends its CPU under load.

Starts the nginx backend and lbcore with the scenario's configuration (keep-alive by
default; access log on, like the scenarios), loads it with wrk and the scenario's
script, and samples the worker with py-spy (``--native``: C frames of uvloop,
httptools, CPython, OpenSSL and libc included) twice: once to a flame graph
(``bench/results/profile-SCENARIO.svg``), once to collapsed stacks that this module
sums up into ``bench/results/profile-SCENARIO.md``: the leaf frames (where the CPU
is), the innermost Python function of each sample (which Python code the time is
spent in or under), inclusive time per Python function, and time per lbcore module.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections import Counter
from pathlib import Path

from bench import servers
from bench.certs import make_cert
from bench.configs import Frontend
from bench.oneoff import Stage, stage, wrk
from bench.run import Progress
from bench.scenarios import Scenario

__all__ = ["profile", "summarise"]

RATE = 100  # samples per second: py-spy pauses the worker for each native stack, keep it rare
TOP = 25
_LINE = re.compile(r":\d+\)$")
_PY = re.compile(r"\.py:\d+\)$|<frozen [^>]+>:\d+\)$|<string>:\d+\)$")


def summarise(collapsed: str, top: int = TOP) -> str:
    """Markdown tables from py-spy's raw (collapsed stacks) output."""
    total = 0
    leaf: Counter[str] = Counter()
    python_leaf: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    modules: Counter[str] = Counter()
    for line in collapsed.splitlines():
        stack, _, count = line.rstrip().rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = [_LINE.sub(")", frame) for frame in stack.split(";")]
        raw = stack.split(";")
        leaf[frames[-1]] += n
        python = [frames[i] for i, frame in enumerate(raw) if _PY.search(frame)]
        if python:
            python_leaf[python[-1]] += n
        for frame in set(python):
            inclusive[frame] += n
        ours = [frame for frame in python if "lbcore/" in frame]
        if ours:
            modules[ours[-1].rpartition("(")[2].rstrip(")")] += n
    if not total:
        return "No samples.\n"

    def table(title: str, counts: Counter[str], note: str) -> list[str]:
        rows = [f"### {title}", "", note, "", "| share | frame |", "|---:|---|"]
        rows += [f"| {100 * n / total:.1f}% | `{name}` |" for name, n in counts.most_common(top)]
        return rows + [""]

    lines = [f"{total:,} samples.", ""]
    lines += table("Leaf frames (self time)", leaf, "Where the CPU was: the innermost frame, C or Python.")
    lines += table("Innermost Python function", python_leaf,
                   "The Python function each sample was in, counting the C it called (a syscall from "
                   "`transport.write` counts for the function that wrote).")
    lines += table("Inclusive, per Python function", inclusive, "Samples with the function anywhere on the stack.")
    lines += table("Per lbcore module", modules, "The innermost lbcore frame's module.")
    return "\n".join(lines)


def profile(scenario: Scenario, results: Path, *, seconds: int, workers: int, load_cpu: str,
            server_cpu: str) -> int:
    progress = Progress()
    if scenario.kind != "wrk":
        print(f"{scenario.name} is not a load scenario: pick one that runs wrk", flush=True)
        return 2
    if shutil.which("py-spy") is None:
        print("py-spy is not installed: pip install py-spy", flush=True)
        return 2
    with stage(load_cpu, "lbcore-profile-") as where:
        return _profile(scenario, results, where, seconds=seconds, workers=workers, load_cpu=load_cpu,
                        server_cpu=server_cpu, progress=progress)


def _profile(scenario: Scenario, results: Path, where: Stage, *, seconds: int, workers: int, load_cpu: str,
             server_cpu: str, progress: Progress) -> int:
    workdir = where.workdir
    fe = Frontend(port=where.ports.take(), backend_port=where.backend_port, workers=workers, acls=scenario.acls,
                  tls=make_cert(workdir / "certs", scenario.tls) if scenario.tls else None,
                  resume=scenario.resume, access_log_port=where.log_port if scenario.access_log else None)
    lbcore = None
    try:
        lbcore = servers.start(servers.ServerSpec("lbcore", "lbcore", workers), fe, workdir / "lbcore", server_cpu)
        worker_pids = [pid for pid in lbcore.pids() if pid != lbcore.proc.pid]
        if not worker_pids:
            print("no lbcore worker process", flush=True)
            return 1
        url = f"{fe.scheme}://127.0.0.1:{fe.port}{scenario.path}"
        results.mkdir(parents=True, exist_ok=True)
        raw = workdir / "collapsed.txt"
        svg = results / f"profile-{scenario.name}.svg"
        for fmt, output in (("raw", raw), ("flamegraph", svg)):
            progress(f"wrk on {url} and py-spy ({fmt}) on worker pid {worker_pids[0]} for {seconds}s")
            load = wrk(scenario, url, seconds + 4, load_cpu)
            time.sleep(2)
            spy = subprocess.run(
                ["taskset", "-c", load_cpu, "py-spy", "record", "--pid", str(worker_pids[0]), "--native",
                 "--rate", str(RATE), "--duration", str(seconds), "--format", fmt, "--output", str(output)],
                capture_output=True, text=True, timeout=seconds + 60,
            )
            out, _ = load.communicate(timeout=seconds + 60)
            progress((spy.stdout + spy.stderr).strip().splitlines()[-1] if (spy.stdout + spy.stderr).strip() else
                     f"py-spy exited {spy.returncode}")
            totals = next((line for line in out.splitlines() if line.startswith("BENCH_JSON")), out.strip()[-300:])
            progress(f"wrk: {totals}")
            if spy.returncode != 0:
                return 1
        summary = summarise(raw.read_text())
        head = [
            f"# lbcore worker profile: {scenario.title} "
            f"(generated by `python -m bench --profile {scenario.name}`)",
            "",
            f"py-spy {RATE} Hz with native frames, {seconds} s, on one of {workers} worker(s) of `lbcore serve` "
            f"with the {scenario.name} scenario's Spec ({scenario.acls} ACLs, X-Forwarded-For, access log "
            f"{'to syslog UDP' if scenario.access_log else 'off'}), wrk -c{scenario.connections} "
            f"-s {scenario.script} on CPU {load_cpu}, the worker on CPU {server_cpu}. "
            f"Flame graph: `{svg.name}`.",
            "",
        ]
        md = results / f"profile-{scenario.name}.md"
        md.write_text("\n".join(head) + summary)
        print(summary, flush=True)
        progress(f"written: {svg}, {md}")
        return 0
    finally:
        if lbcore is not None:
            lbcore.stop()
