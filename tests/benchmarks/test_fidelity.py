"""The fidelity benchmark end to end at toy size, and its building blocks against the oracle."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmarks import fidelity
from shapnet import DeepShapNet, exact_shapley


def test_cli_quick_writes_expected_rows(tmp_path: Path) -> None:
    out = tmp_path / "fid"
    assert fidelity.main(["--dataset", "diabetes", "--quick", "--out", str(out)]) == 0
    with open(out / "fidelity.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["method", "family", "budget", "rel_l2", "spearman", "top3", "sec_per_sample",
                             "evals_per_sample", "note"]
    extra = [r for r in rows if "extra budget" in r["note"]]
    names = [r["method"] for r in rows if r not in extra]
    # --quick: Kernel at 16 and 2^10, Permutation at 64, Captum samplers at 32; every other method once.
    assert names == [
        "ShapNet (built-in)", "shap Kernel (16)", "shap Kernel (2^10=1024)", "shap Permutation (64)", "shap Exact",
        "Captum KernelShap (32)", "Captum ShapleyValueSampling (32)", "Captum DeepLift", "Captum DeepLiftShap",
        "Captum GradientShap", "Captum IntegratedGradients", "Captum InputXGradient",
        "ShallowShapNet (built-in, exact control)",
    ]
    by_name = {r["method"]: r for r in rows}
    shapnet_error = float(by_name["ShapNet (built-in)"]["rel_l2"])
    # Extra budgets are smaller than the family's first default budget and stop once the ShapNet's error
    # is bracketed (or at the smallest sensible budget).
    for family in {r["family"] for r in extra}:
        added = sorted((r for r in extra if r["family"] == family), key=lambda r: int(r["budget"]))
        defaults = [int(r["budget"]) for r in rows if r["family"] == family and r not in extra]
        assert int(added[-1]["budget"]) < min(defaults)
        smallest = added[0]
        assert (float(smallest["rel_l2"]) > shapnet_error
                or int(smallest["budget"]) == fidelity.min_budget(family, 10)), smallest
    # Exact methods reproduce the truth up to float32 rounding; the ShallowShapNet control is exact.
    for exact in ("shap Exact", "shap Kernel (2^10=1024)", "ShallowShapNet (built-in, exact control)"):
        assert float(by_name[exact]["rel_l2"]) < 1e-5, exact
        assert float(by_name[exact]["spearman"]) > 0.999
        assert float(by_name[exact]["top3"]) == 1.0
    assert float(by_name["ShapNet (built-in)"]["evals_per_sample"]) == 1.0
    assert float(by_name["shap Kernel (16)"]["evals_per_sample"]) > 16
    for r in rows:
        assert float(r["sec_per_sample"]) > 0
        assert 0.0 <= float(r["top3"]) <= 1.0
    payload = json.loads((out / "fidelity.json").read_text())
    assert payload["n_samples"] == 4 and payload["explained_output"] == "the single output"
    ratio = payload["ratio"]
    assert ratio["shapnet_rel_l2"] == pytest.approx(shapnet_error)
    # The exact Kernel budget always reaches the ShapNet's error, so shap Kernel has a finite ratio.
    assert ratio["per_family"]["shap Kernel"]["ratio"] > 0
    assert (out / "fidelity.png").stat().st_size > 0


def test_shap_exact_equals_exact_shapley() -> None:
    torch.manual_seed(0)
    model = DeepShapNet(6, 3, channels=4, hidden=(8,), reference=torch.linspace(-0.3, 0.3, 6)).eval()
    x = torch.randn(5, 6)
    target = torch.tensor([0, 1, 2, 1, 0])
    spec = next(s for s in fidelity.build_methods(6) if s.family == "shap Exact")
    got = spec.run(fidelity.CountingModel(model), x, target, model.reference)
    truth = exact_shapley(model.double(), x.double(), model.reference.double())[torch.arange(5), :, target]
    np.testing.assert_allclose(got, truth.numpy(), rtol=1e-5, atol=1e-6)


def test_time_to_reach_interpolates_in_log_log() -> None:
    # Errors 0.1, 0.01 at 1 s and 100 s: the error 0.0316 (half-way in log) is reached at 10 s.
    hit = fidelity.time_to_reach([(1.0, 0.1), (100.0, 0.01)], 10 ** -1.5)
    assert hit["status"] == "interpolated" and hit["seconds"] == pytest.approx(10.0)
    assert fidelity.time_to_reach([(1.0, 0.1)], 0.5)["status"] == "first budget"
    assert fidelity.time_to_reach([(1.0, 0.1), (2.0, 0.05)], 0.01) == {
        "status": "not reached", "seconds": None, "budget_index": None}
