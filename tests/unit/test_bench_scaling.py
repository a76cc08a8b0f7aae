"""The scaling scenario's summary: runs where one worker took every connection measured
one worker, and the split-only ratio leaves them out (bench.run)."""

from __future__ import annotations

from bench.run import _summarise, _workers_busy
from bench.scenarios import by_name


def run(per_cpu_s: float, by_process: list[float]) -> dict:
    return {"per_cpu_s": per_cpu_s, "cpu_s": sum(by_process), "cpu_by_process": by_process, "rate": per_cpu_s,
            "cpu_util": 1.0, "cpu_system_share": 0.6, "errors": {}, "requests": int(per_cpu_s * 5)}


def servers(one: list[float], two: list[dict]) -> dict:
    one_runs = [run(value, [1.0, 0.0]) for value in one]
    return {
        "lbcore": {"status": "ok", "runs": one_runs},
        "lbcore-2w": {"status": "ok", "runs": two},
    }


def test_a_worker_counts_as_busy_from_a_tenth_of_the_trees_cpu() -> None:
    assert _workers_busy(run(1.0, [2.5, 2.4, 0.01])) == 2
    assert _workers_busy(run(1.0, [4.9, 0.1, 0.0])) == 1  # 2% of the tree: its connections were elsewhere
    assert _workers_busy({"per_cpu_s": 1.0}) == 0  # a run recorded before the split was


def test_the_split_ratio_takes_only_the_runs_that_split_the_connections() -> None:
    record = {"servers": servers([100.0, 100.0, 100.0], [
        run(99.0, [5.0, 0.0, 0.0]),  # one worker took everything
        run(90.0, [2.5, 2.5, 0.0]),
        run(80.0, [2.6, 2.4, 0.0]),
    ])}
    _summarise(by_name("scaling"), record)
    assert record["scaling_2w_over_1w"]["lbcore"] == 0.9
    assert record["scaling_2w_split"] == {"runs": 2, "of": 3, "ratio": 0.85}


def test_no_split_run_gives_no_split_ratio() -> None:
    record = {"servers": servers([100.0], [run(99.0, [5.0, 0.0])])}
    _summarise(by_name("scaling"), record)
    assert record["scaling_2w_split"] == {"runs": 0, "of": 1, "ratio": None}
