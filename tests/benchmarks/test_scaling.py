"""The scaling benchmark end to end at toy size."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import torch

from benchmarks import scaling


def test_cli_quick_writes_expected_rows(tmp_path: Path) -> None:
    out = tmp_path / "scaling"
    assert scaling.main(["--quick", "--dims", "4,8,32", "--out", str(out)]) == 0
    with open(out / "scaling.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["d", "method", "budget", "budget_rule", "evals_per_sample", "measured",
                             "seconds_per_batch", "rel_l2", "x_shapnet"]
    cells = [(int(r["d"]), r["method"]) for r in rows]
    posthoc = ["shap Kernel", "Captum ShapleyValueSampling"]
    assert cells == [
        *[(d, m) for d in (4, 8) for m in ["ShapNet (built-in)", "exact_shapley (brute force)", *posthoc]],
        *[(32, m) for m in ["ShapNet (built-in)", *posthoc]],
    ]
    for r in rows:
        assert float(r["seconds_per_batch"]) > 0 and 1 <= int(r["measured"]) <= 4
        if r["method"] in posthoc:
            small = int(r["d"]) <= scaling.MAX_EXACT
            assert r["budget_rule"].startswith("calibrated" if small else "shap default" if "Kernel" in r["method"]
                                               else "Captum default")
    payload = json.loads((out / "scaling.json").read_text())
    for d in ("4", "8"):
        cal = payload["calibration"][d]
        target = cal["shapnet_rel_l2"]
        for name in posthoc:
            # A calibrated budget either reaches the ShapNet's error or is flagged as not reaching it.
            assert cal[name]["reached"] == (cal[name]["rel_l2"] <= target)
    # Kernel SHAP at d = 4 enumerates all 2**4 coalitions at its largest budget: it must reach the target.
    assert payload["calibration"]["4"]["shap Kernel"]["reached"]
    # Evaluations: 25 permutations of d = 32 features (plus the baseline) for Captum's default.
    svs32 = next(r for r in rows if r["d"] == "32" and r["method"] == "Captum ShapleyValueSampling")
    assert float(svs32["evals_per_sample"]) == 25 * 32 + 1
    assert (out / "scaling.png").stat().st_size > 0


def test_synthetic_task_is_seeded() -> None:
    x1, y1 = scaling.synthetic_task(16, 32, seed=3)
    x2, y2 = scaling.synthetic_task(16, 32, seed=3)
    assert x1.shape == (32, 16) and y1.shape == (32,)
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert not torch.equal(scaling.synthetic_task(16, 32, seed=4)[1], y1)
