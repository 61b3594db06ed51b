"""The speed benchmark at toy size: what it times, how it counts FLOPs, and what it writes."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from benchmarks import speed
from shapnet import DeepShapNet, Pruning


def test_interleaved_timings_run_every_function_in_turn() -> None:
    calls: list[str] = []
    fns = [lambda: calls.append("a"), lambda: calls.append("b"), lambda: calls.append("c")]
    timings = speed._interleaved_timings(fns, repeats=4, warmup=2)
    assert calls == ["a", "b", "c"] * 6  # round-robin, warm-up rounds included
    assert len(timings) == 3 and all(0.0 <= best <= median for median, best in timings)


def test_naive_coalition_flops_counts_every_module_on_every_coalition() -> None:
    model = DeepShapNet(8, 3, channels=5, hidden=(7,))  # 3 butterfly layers of 4 pairwise modules
    widths = [1, 5, 5, 3]
    per_row = sum(4 * 4 * 2 * (2 * c_in * 7 + 7 * c_out) for c_in, c_out in zip(widths[:-1], widths[1:]))
    assert speed.naive_coalition_flops(model, batch=1) == per_row
    assert speed.naive_coalition_flops(model, batch=10) == 10 * per_row


def test_measure_reports_each_variant_on_the_same_weights() -> None:
    torch.set_num_threads(1)
    build = lambda p: DeepShapNet(16, 4, channels=4, hidden=(8,), prune=p)  # noqa: E731
    prunes = (None, Pruning(fraction=0.5, granularity="group"))
    rows = speed.measure("tiny", build, prunes, batch=32, repeats=2, peak=1e10)
    assert [r["prune"] for r in rows] == ["none", "0.5 group"]
    assert rows[0]["skipped"] == 0.0 and 0.3 < rows[1]["skipped"] < 0.7
    assert rows[0]["speedup"] == 1.0
    for r in rows:
        assert r["explain_ms"] > 0 and r["train_step_ms"] > 0
        assert r["train/explain"] == pytest.approx(r["train_step_ms"] / r["explain_ms"])
        assert r["efficiency"] == pytest.approx(r["naive_gflop"] * 1e9 / (r["explain_ms"] / 1e3 * 1e10))


def test_cli_writes_table_csv_json_and_plot(tmp_path: Path) -> None:
    out = tmp_path / "speed"
    assert speed.main(["--configs", "deep d=16", "--repeats", "1", "--batch", "16", "--out", str(out)]) == 0
    with open(out / "speed.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["prune"] for r in rows] == ["none", "0.5 feature", "0.5 group"]
    payload = json.loads((out / "speed.json").read_text())
    assert payload["machine"]["torch_threads"] == 1 and payload["machine"]["repeats"] == 1
    assert (out / "speed.png").stat().st_size > 0


def test_threads_mode_times_both_paths_at_every_thread_count(tmp_path: Path) -> None:
    out = tmp_path / "threads"
    argv = ["--configs", "deep d=16", "--repeats", "1", "--batch", "8", "--threads", "1,2", "--out", str(out)]
    assert speed.main(argv) == 0
    with open(out / "threads.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["path"], r["threads"]) for r in rows] == [
        ("compiled", "1"),
        ("compiled", "2"),
        ("torch tiles", "1"),
        ("torch tiles", "2"),
    ]
    for r in rows:
        assert float(r["explain_ms"]) > 0 and float(r["train_step_ms"]) > 0
        if r["path"] == "compiled":  # a share of CPU time, and Amdahl's bound from it
            share = float(r["explain_kernel_share"])
            assert 0.0 < share < 1.0
            n = int(r["threads"])
            assert float(r["explain_amdahl"]) == pytest.approx(1 / (1 - share + share / n))
        else:
            assert r["explain_kernel_share"] == ""
        if r["threads"] == "1":
            assert float(r["explain_speedup"]) == 1.0 and float(r["train_speedup"]) == 1.0
    assert json.loads((out / "threads.json").read_text())["machine"]["threads"] == [1, 2]
    assert (out / "threads.png").stat().st_size > 0
    assert torch.get_num_threads() == 1  # the benchmark leaves torch on one thread


def test_check_cost_replays_the_checks_of_one_explanation() -> None:
    model = DeepShapNet(16, 4, channels=4, hidden=(8,), prune=Pruning(fraction=0.5))
    cost = speed.check_cost(model, torch.randn(32, 16), repeats=3)
    assert cost > 0.0
    # The recorders are gone afterwards: the model runs on the real checks again.
    from shapnet import modules
    from shapnet._backends import checks, compiled

    assert compiled.check_layer is checks.check_layer and modules.check_layer is checks.check_layer
    assert compiled.check_prune is checks.check_prune


def test_bad_thread_counts_are_refused(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        speed.main(["--threads", "0", "--out", str(tmp_path / "x")])
    with pytest.raises(SystemExit):
        speed.main(["--threads", "two", "--out", str(tmp_path / "x")])
