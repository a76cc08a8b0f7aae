"""Writing a run's results: JSON (everything), Markdown (the tables), PNG (the chart)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

__all__ = ["TARGETS", "markdown", "plot", "targets", "write"]

KIB = 1024

# Issue 7's targets: (what, scenario, server, compared with, at least/at most, bound).
# "haproxy" compares the medians per server CPU-second with haproxy's in the same run
# (the scenario's ratio); another server label compares with that server; "KiB" is
# memory per idle connection.
TARGETS = (
    ("TLS full handshakes, RSA-2048", "tls-full-rsa", "lbcore", "haproxy", ">=", 1.1),
    ("TLS full handshakes, ECDSA P-256", "tls-full-ecdsa", "lbcore", "haproxy", ">=", 1.2),
    ("HTTP keep-alive", "keepalive", "lbcore", "haproxy", ">=", 1.0),
    ("HTTP keep-alive vs the naive proxy", "keepalive", "lbcore", "naive", ">=", 1.5),
    ("HTTP, new connection per request", "close", "lbcore", "haproxy", ">=", 0.9),
    ("HTTPS keep-alive", "https-keepalive", "lbcore", "haproxy", ">=", 0.9),
    ("TLS resumed (tickets)", "tls-resumed", "lbcore", "haproxy", ">=", 1.0),
    ("Idle HTTP keep-alive connection", "idle-http", "lbcore", "KiB", "<=", 16),
    ("Idle HTTPS keep-alive connection", "idle-https", "lbcore", "KiB", "<=", 64),
    ("Scaling: 2 workers vs 1, per CPU-second", "scaling", "lbcore-2w", "lbcore", ">=", 0.9),
)


def _interpreter_line(py: dict) -> str:
    """Which interpreter ran lbcore (and the naive proxy): its build moves their figures."""
    linked = "libpython shared" if py["libpython_shared"] else "libpython linked in"
    return f"- lbcore's interpreter: {py['base_executable']} ({py['implementation']}, {linked})"


def _scenario(results: dict, name: str) -> dict | None:
    return next((s for s in results["scenarios"] if s["name"] == name), None)


def targets(results: dict) -> list[dict]:
    """Where each target stands: met, not met, or not measured (and why)."""
    out = []
    for what, name, server, against, op, bound in TARGETS:
        row = {"target": what, "scenario": name, "server": server,
               "goal": f"{'≥' if op == '>=' else '≤'} {bound:g}{' KiB' if against == 'KiB' else 'x ' + against}"}
        scenario = _scenario(results, name)
        entry = (scenario or {}).get("servers", {}).get(server)
        value = None
        if entry is None:
            row["status"] = "not measured (scenario not run)" if scenario is None else f"not measured ({server} not run)"
        elif entry.get("status") != "ok":
            row["status"] = f"not measured ({server}: {entry.get('status')})"
        elif against == "KiB":
            per = (entry.get("idle") or {}).get("bytes_per_connection")
            value = per / KIB if per is not None else None
        else:
            other = scenario["servers"].get(against, {})
            if entry.get("median") and other.get("median"):
                value = entry["median"] / other["median"]
        if value is not None:
            met = value >= bound if op == ">=" else value <= bound
            row["value"] = round(value, 3)
            row["measured"] = f"{value:.1f} KiB" if against == "KiB" else f"{value:.2f}x"
            if against != "KiB" and f"{value:.2f}" == f"{bound:.2f}" and value != bound:
                row["measured"] = f"{value:.3f}x"  # 1.196x, not "1.20x" beside "not met"
            row["status"] = "met" if met else "not met"
            if entry.get("comparable") is False:
                row["status"] += " (not comparable: " + entry.get("note", "") + ")"
        elif "status" not in row:
            row["status"] = "not measured (no figure)"
        out.append(row)
    return out


def busy_shares(run: dict, floor: float) -> list[float]:
    """The shares (0-1) of a run's server CPU taken by each process of the tree that took
    at least ``floor`` of it, largest first (the run's ``cpu_by_process``)."""
    total = run.get("cpu_s") or 0
    if not total:
        return []
    return [seconds / total for seconds in run.get("cpu_by_process", ()) if seconds >= total * floor]


def shares_text(shares: list[float]) -> str:
    """``50/50``: CPU shares in percent."""
    return "/".join(f"{share * 100:.0f}" for share in shares)


def _worker_split(run: dict) -> str:
    """One run of several workers: its figure, how the CPU fell on them, how often they switched."""
    waits, preempted = run["switches_per_1k"]
    return f"{_num(run['per_cpu_s'], 0)} ({shares_text(busy_shares(run, 0.01))}%; {waits} + {preempted})"


def _num(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "–"
    return f"{value:,.{digits}f}"


def _errors(entry: dict) -> str:
    totals = entry.get("errors_total") or {}
    if not totals:
        return "0"
    return ", ".join(f"{k} {v:,}" for k, v in sorted(totals.items()))


def _in_place(modules: dict[str, str] | None) -> str:
    """The request-path modules compiled from their own .py: all, none, or which run pure."""
    if not modules:
        return "not recorded"
    pure = [name for name, implementation in modules.items() if implementation != "compiled"]
    if not pure:
        return f"all {len(modules)} modules"
    if len(pure) == len(modules):
        return f"none of {len(modules)} modules (pure Python)"
    return f"{len(modules) - len(pure)} of {len(modules)} modules (pure: {', '.join(pure)})"


def markdown(results: dict) -> str:
    m = results["machine"]
    s = results["settings"]
    v = m["versions"]
    lb = m["lbcore"]
    lines = [
        f"# lbcore benchmark, {results['started']}",
        "",
        f"- Command: `{results['command']}`" + (" (quick: indicative only)" if s["quick"] else ""),
        f"- Machine: {m['cpu_model']}, {m['cores']} cores, {m['memory_mib']:,} MiB, Linux {m['kernel']}, {m['os']}",
        "- Pinning: " + "; ".join(f"{what} on CPU {cpu}" for what, cpu in m["pinning"].items()),
        f"- Versions: {v['haproxy']}; {v['nginx']}; {v['stunnel']}; {v['wrk']}; {v['openssl']}; "
        f"Python {v['python']} ({v['python_ssl']}), uvloop {v['uvloop']}, httptools {v['httptools']}",
        *([_interpreter_line(m["python"])] if "python" in m else []),
        f"- lbcore {lb['version']} at {lb['commit']}{' (with uncommitted changes)' if lb['uncommitted_changes'] else ''}; "
        f"compiled fast paths: {', '.join(lb['compiled_fastpaths']) or 'none'}; "
        f"request path compiled in place: {_in_place(lb.get('compiled_in_place'))}",
        f"- {s['reps']} repetitions of {s['seconds_per_run']} s per server and scenario (after a "
        f"{s['warmup_seconds']} s warm-up), servers in rotated order; lbcore workers / haproxy threads: "
        f"{s['workers']} (scaling: as labelled); access logs: {_logs_text(s)}",
        f"- Took {results.get('elapsed_seconds', 0):.0f} s.",
        "",
        "Per server CPU-second = what wrk counted (requests; TLS handshakes, one per request with",
        "`Connection: close`; MiB for 1 MiB responses) ÷ the user+system CPU seconds of the server's",
        "process tree over the run (/proc/PID/stat: supervisor + workers, master + worker).",
        "Ratio: median ÷ haproxy's median in the same run (same worker/thread count in the scaling scenario).",
        "Server CPU: CPU seconds per wall second of the run (the share of it in the kernel, system time).",
        "",
        "| scenario | server | per server CPU-s: median | min – max | ratio to haproxy | rate /s | server CPU (system) | errors |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    notes: list[str] = []
    for scenario in results["scenarios"]:
        if scenario["kind"] != "wrk":
            continue
        if scenario.get("error"):
            notes.append(f"- {scenario['name']}: harness error: {scenario['error']}")
        unit = scenario["unit"]
        for label, entry in scenario["servers"].items():
            if entry.get("status") != "ok" or "median" not in entry:
                reason = entry.get("reason", "no measurement")
                status = entry.get("status", "not measured")
                lines.append(f"| {scenario['name']} | {label} | {status} | | | | | |")
                notes.append(f"- {scenario['name']} / {label}: {status}: {reason.splitlines()[0] if reason else ''}")
                continue
            mark = " †" if entry.get("comparable") is False else ""
            ratio = f"{entry['ratio']:.2f}x" if "ratio" in entry else "–"
            if entry.get("reference") not in (None, "haproxy"):
                ratio += f" ({entry['reference']})"
            lines.append(
                f"| {scenario['name']} | {label}{mark} | {_num(entry['median'], 1 if unit == 'MiB' else 0)} {unit} | "
                f"{_num(entry['min'], 1 if unit == 'MiB' else 0)} – {_num(entry['max'], 1 if unit == 'MiB' else 0)} | "
                f"{ratio} | {_num(entry['rate_median'], 1 if unit == 'MiB' else 0)} | "
                f"{entry['cpu_util_median'] * 100:.0f}% ({entry.get('cpu_system_share_median', 0) * 100:.0f}%) | "
                f"{_errors(entry)} |"
            )
            if mark:
                notes.append(f"- † {scenario['name']} / {label}: {entry.get('note')}")
            sessions = [run.get("tls_sessions") for run in entry.get("runs", []) if run.get("tls_sessions")]
            if sessions and scenario.get("unit") == "handshakes":
                total = sum(x["total"] for x in sessions)
                resumed = sum(x["resumed"] for x in sessions)
                notes.append(f"- {scenario['name']} / {label}: the server counted {total:,} TLS handshakes, "
                             f"{resumed:,} resumed ({100 * resumed / total if total else 0:.1f}%)")
        if scenario.get("scaling_2w_over_1w"):
            ratios = ", ".join(f"{k} {v:.2f}" for k, v in scenario["scaling_2w_over_1w"].items())
            notes.append(f"- scaling, 2 workers ÷ 1 worker per CPU-second: {ratios}")
            split = scenario.get("scaling_2w_split")
            if split:
                ratio = f"{split['ratio']:.2f}" if split["ratio"] is not None else "–"
                others = " (the others measured one worker)" if split["runs"] < split["of"] else ""
                notes.append(f"- scaling / lbcore-2w: {split['runs']} of {split['of']} runs had the connections split "
                             f"between the workers{others}; their median ÷ 1 worker: {ratio}")
            two = scenario["servers"].get("lbcore-2w", {})
            runs = [_worker_split(run) for run in two.get("runs", []) if "cpu_by_process" in run]
            if runs:
                notes.append("- scaling / lbcore-2w, each run: per CPU-second (CPU share of each busy worker; "
                             "context switches per 1,000 requests, waits + preemptions): " + "; ".join(runs))
    idle = [s for s in results["scenarios"] if s["kind"] == "idle"]
    if idle:
        lines += [
            "",
            "## Idle keep-alive connections",
            "",
            "Each connection made one request (answered 200) and is held idle; memory = the server tree's RSS",
            "while they are held minus before, divided by the connections opened.",
            "",
            "| scenario | server | opened | still open after | RSS before → after | per connection | ratio to haproxy |",
            "|---|---|---:|---:|---:|---:|---:|",
        ]
        for scenario in idle:
            for label, entry in scenario["servers"].items():
                data = entry.get("idle")
                if entry.get("status") != "ok" or data is None:
                    lines.append(f"| {scenario['name']} | {label} | {entry.get('status', 'not measured')} | | | | |")
                    reason = entry.get("reason", "")
                    notes.append(f"- {scenario['name']} / {label}: {entry.get('status')}: {reason.splitlines()[0] if reason else ''}")
                    continue
                per = data["bytes_per_connection"]
                lines.append(
                    f"| {scenario['name']} | {label} | {data['opened']:,} / {data['requested']:,} | {data['alive_after']:,} | "
                    f"{data['rss_before'] / KIB / KIB:.1f} → {data['rss_after'] / KIB / KIB:.1f} MiB | "
                    f"{_num(per / KIB if per is not None else None, 1)} KiB | "
                    f"{(format(entry['ratio'], '.2f') + 'x') if 'ratio' in entry else '–'} |"
                )
                if data["failed"]:
                    notes.append(f"- {scenario['name']} / {label}: connections that failed: {data['failed']}")
    speed = next((s.get("speed") for s in results["scenarios"] if s["kind"] == "speed" and s.get("speed")), None)
    if speed:
        lines += [
            "",
            "## The physical limit: `" + speed["command"] + "` on the server CPU",
            "",
            "| key | signatures/s | µs per signature |",
            "|---|---:|---:|",
            f"| RSA-2048 | {speed['rsa2048']['sign_per_s']:,.0f} | {speed['rsa2048']['sign_us']} |",
            f"| ECDSA P-256 | {speed['ecdsa-p256']['sign_per_s']:,.0f} | {speed['ecdsa-p256']['sign_us']} |",
            "",
            "A full handshake signs once, so no server exceeds these per CPU-second; the key exchange, the",
            "rest of the handshake and the proxying come on top.",
        ]
    lines += ["", "## Targets (issue 7)", "", "| target | server | goal | measured | status |", "|---|---|---|---:|---|"]
    for row in targets(results):
        lines.append(f"| {row['target']} | {row['server']} | {row['goal']} | {row.get('measured', '–')} | {row['status']} |")
    if notes or results.get("problems"):
        lines += ["", "## Notes", ""] + notes
        for problem in results.get("problems", []):
            lines.append(f"- {problem.splitlines()[0]}")
    return "\n".join(lines) + "\n"


def _plotted(entry: dict, label: str, metric: str) -> float | None:
    if metric == "kib":
        per = (entry.get("idle") or {}).get("bytes_per_connection")
        return per / KIB if per is not None else None
    if entry.get("ratio") is not None:
        return entry["ratio"]
    # haproxy is the reference its scenario's ratios divide by: 1.0 on the chart.
    return 1.0 if label.startswith("haproxy") and entry.get("median") else None


def plot(results: dict, path: Path) -> str | None:
    """The chart: ratio to haproxy per scenario and server, and memory per idle
    connection. Returns why not, if it cannot be drawn."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.patches import Patch
    except ImportError:
        return "matplotlib is not installed (pip install -e '.[bench]')"
    wrk = [s for s in results["scenarios"] if s["kind"] == "wrk"]
    idle = [s for s in results["scenarios"] if s["kind"] == "idle"]
    order = ("lbcore", "haproxy", "nginx", "stunnel", "naive")
    labels = sorted({label for s in wrk + idle for label in s["servers"]},
                    key=lambda l: (order.index(l.split("-")[0]) if l.split("-")[0] in order else 9, l))
    colours = {label: plt.cm.tab10(i % 10) for i, label in enumerate(labels)}
    fig, axes = plt.subplots(2, 1, figsize=(13, 9), gridspec_kw={"height_ratios": [3, 2]})
    for ax, group, metric, title in (
        (axes[0], wrk, "ratio", "per server CPU-second, ratio to haproxy in the same run (higher is better)"),
        (axes[1], idle, "kib", "memory per idle keep-alive connection, KiB (lower is better)"),
    ):
        for j, scenario in enumerate(group):
            entries = scenario["servers"]
            bars = [(label, _plotted(entries[label], label, metric)) for label in labels if label in entries]
            bars = [(label, value) for label, value in bars if value is not None]
            width = 0.8 / max(1, len(bars))
            for i, (label, value) in enumerate(bars):
                x = j + (i - (len(bars) - 1) / 2) * width
                # Hatched: the figure is not what the scenario means (see the notes in the Markdown).
                hatch = "//" if entries[label].get("comparable") is False else None
                ax.bar(x, value, width * 0.95, color=colours[label], hatch=hatch, edgecolor="white")
                ax.text(x, value, f"{value:.2f}" if metric == "ratio" else f"{value:.0f}", ha="center",
                        va="bottom", fontsize=6)
        ax.set_xticks(range(len(group)))
        ax.set_xticklabels([s["name"] for s in group], rotation=15)
        ax.set_title(title, fontsize=10)
        ax.grid(axis="y", alpha=0.3)
        if metric == "ratio":
            ax.axhline(1.0, color="black", linewidth=0.8)
    fig.legend(handles=[Patch(color=colours[label], label=label) for label in labels], ncol=len(labels),
               fontsize=9, loc="lower center")
    m = results["machine"]
    fig.suptitle(f"lbcore vs haproxy, nginx, stunnel and a naive asyncio proxy — {m['cpu_model']}, "
                 f"{m['cores']} cores, {results['started']}{' (quick)' if results['settings']['quick'] else ''}",
                 fontsize=11)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return None


def write(results: dict, out_dir: Path, latest: Path | None = None) -> list[Path]:
    """results.json, results.md, results.png in ``out_dir``; copied to
    ``latest/latest.{json,md,png}`` when ``latest`` is given."""
    out_dir.mkdir(parents=True, exist_ok=True)
    results["targets"] = targets(results)
    problem = plot(results, out_dir / "results.png")
    if problem:
        results["problems"].append(f"no chart: {problem}")
    written = [out_dir / "results.json", out_dir / "results.md"]
    written[0].write_text(json.dumps(results, indent=2) + "\n")
    written[1].write_text(markdown(results))
    if not problem:
        written.append(out_dir / "results.png")
    if latest is not None:
        for path in list(written):
            target = latest / f"latest{path.suffix}"
            shutil.copyfile(path, target)
            written.append(target)
    return written


def _logs_text(settings: dict) -> str:
    if not settings["access_log"]:
        return "off"
    if settings.get("access_log_transport") == "tcp":
        received = settings.get("access_log_tcp_bytes")
        return ("on (syslog over TCP for lbcore and haproxy, octet-counted, read by the harness"
                + (f": {received:,} bytes" if received is not None else "") + "; UDP for nginx)")
    return "on (syslog over UDP)"
