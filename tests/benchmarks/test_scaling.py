"""The scaling benchmark end to end at toy size."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from benchmarks import scaling


def test_cli_small_writes_expected_rows(tmp_path: Path) -> None:
    out = tmp_path / "scaling"
    small = [
        "--batch",
        "4",
        "--train-steps",
        "2",
        "--channels",
        "4",
        "--hidden",
        "8",
        "--calib-samples",
        "2",
        "--max-seconds",
        "0.5",
        "--repeats",
        "1",
    ]
    assert scaling.main(["--dims", "4,8,32", *small, "--out", str(out)]) == 0
    with open(out / "scaling.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == list(scaling.COLUMNS)
    cells = [(int(r["d"]), r["method"]) for r in rows]
    posthoc = list(scaling.POSTHOC)  # registry names: shap_kernel, shapley_value_sampling
    assert cells == [
        *[(d, m) for d in (4, 8) for m in ["shapnet", "exact_shapley (brute force)", *posthoc]],
        *[(32, m) for m in ["shapnet", *posthoc]],
    ]
    for r in rows:
        assert float(r["seconds_per_batch"]) > 0 and 1 <= int(r["measured"]) <= 4
        if r["method"] in posthoc:
            exact = int(r["d"]) <= scaling.MAX_EXACT
            assert r["budget_rule"].startswith(
                "calibrated" if exact else "shap default" if "kernel" in r["method"] else "Captum default"
            )
    payload = json.loads((out / "scaling.json").read_text())
    for d in ("4", "8"):
        cal = payload["calibration"][d]
        target = cal["shapnet_rel_l2"]
        for name in posthoc:
            # A calibrated budget either reaches the ShapNet's error or is flagged as not reaching it.
            assert cal[name]["reached"] == (cal[name]["rel_l2"] <= target)
    # Kernel SHAP at d = 4 enumerates all 2**4 coalitions at its largest budget: it must reach the target.
    assert payload["calibration"]["4"]["shap_kernel"]["reached"]
    # Evaluations: 25 permutations of d = 32 features (plus the baseline) for Captum's default.
    svs32 = next(r for r in rows if r["d"] == "32" and r["method"] == "shapley_value_sampling")
    assert float(svs32["evals_per_sample"]) == 25 * 32 + 1
    assert (out / "scaling.png").stat().st_size > 0


def test_synthetic_task_is_seeded() -> None:
    x1, y1 = scaling.synthetic_task(16, 32, seed=3)
    x2, y2 = scaling.synthetic_task(16, 32, seed=3)
    assert x1.shape == (32, 16) and y1.shape == (32,)
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert not torch.equal(scaling.synthetic_task(16, 32, seed=4)[1], y1)


def test_bad_dims_are_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exit_info:
        scaling.main(["--dims", "4,x", "--out", str(tmp_path / "s")])
    assert exit_info.value.code == 2 and not (tmp_path / "s").exists()


def test_rivals_are_timed_with_fastshaps_training_apart(tmp_path: Path) -> None:
    out = tmp_path / "scaling"
    argv = ["--dims", "4,32", "--batch", "4", "--train-steps", "2", "--channels", "4", "--hidden", "8"]
    argv += ["--calib-samples", "2", "--max-seconds", "0.2", "--repeats", "1", "--out", str(out)]
    assert scaling.main([*argv, "--rivals", "harsanyi,fastshap", "--fastshap-epochs", "2"]) == 0
    with open(out / "scaling.csv") as fh:
        rows = {(int(r["d"]), r["method"]): r for r in csv.DictReader(fh)}
    for d in (4, 32):
        harsanyi, fast = rows[(d, "harsanyi (built-in)")], rows[(d, "fastshap")]
        assert float(harsanyi["seconds_per_batch"]) > 0 and harsanyi["training_seconds"] == ""
        # The amortised cost: training apart, and the total time to explain the batch from scratch.
        training, batch = float(fast["training_seconds"]), float(fast["seconds_per_batch"])
        assert training > 0 and float(fast["seconds_with_training"]) == pytest.approx(training + batch)
        assert fast["budget"] == "2 epochs" and float(fast["evals_per_sample"]) == 1 + 1 / 4
    # d = 4: errors against exact values; the HarsanyiNet's against its own, exact by construction.
    assert float(rows[(4, "harsanyi (built-in)")]["rel_l2"]) < 1e-5
    assert 0 < float(rows[(4, "fastshap")]["rel_l2"]) < float("inf")
    assert rows[(32, "fastshap")]["rel_l2"] == ""  # no truth beyond MAX_EXACT features
    with pytest.raises(SystemExit) as exit_info:
        scaling.main([*argv, "--rivals", "lime"])
    assert exit_info.value.code == 2
