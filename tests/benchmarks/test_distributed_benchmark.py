"""Tests for benchmarks.distributed: one and two processes on the same global batches, a table and files."""

from __future__ import annotations

import json

from benchmarks.distributed import main


def test_distributed_benchmark_times_one_and_two_processes(tmp_path, capsys) -> None:
    out = tmp_path / "out"
    assert (
        main(
            ["--dataset", "digits", "--steps", "2", "--batch-size", "8", "--repeats", "1", "--out", str(out)]
        )
        == 0
    )
    report = json.loads((out / "distributed.json").read_text())
    assert sorted(r["processes"] for r in report["runs"]) == [1, 2]
    assert all(r["steps"] == 2 and r["steps_per_second"] > 0 for r in report["runs"])
    assert len(report["speedups"]) == 1 and report["speedups"][0] > 0
    assert (out / "distributed.csv").exists() and (out / "distributed.png").exists()
    assert "speedup_median" in capsys.readouterr().out
