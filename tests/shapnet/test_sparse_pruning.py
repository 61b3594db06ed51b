"""Sparse explanations make pruning pay: idle modules are skipped, pruning keeps the guarantees."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from shapnet import DeepShapNet, Pruning, ShapleyLayer, butterfly_groups
from shapnet.training import fit


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_modules_whose_inputs_are_at_the_reference_are_never_computed(dtype: torch.dtype) -> None:
    # float32/float64 run the compiled kernels, bfloat16 the torch tiles: both must skip idle pairs.
    torch.manual_seed(0)
    layer = ShapleyLayer(butterfly_groups(8, 2, 1), 3, 4).to(dtype)
    delta = torch.randn(8, 10, 3).to(dtype)  # (F, B, C)
    module_of = layer.index.groups  # (M, k)
    idle = torch.zeros(module_of.shape[0], 10, dtype=torch.bool)
    idle[0, :] = True  # module 0 idle for every row
    idle[2, ::2] = True  # module 2 idle for every other row
    for m, rows in enumerate(idle):
        for feature in module_of[m]:
            delta[feature, rows] = 0
    out = layer.forward_features(delta, sparse=True)
    assert out.skipped == pytest.approx(idle.float().mean().item())
    for m, rows in enumerate(idle):
        for feature in module_of[m]:
            assert torch.equal(out.values[feature, rows], torch.zeros_like(out.values[feature, rows]))


def test_threshold_pruning_keeps_local_accuracy_and_missingness() -> None:
    torch.manual_seed(0)
    model = DeepShapNet(16, 3, prune=Pruning(threshold=0.5)).double().eval()
    x = torch.randn(32, 16, dtype=torch.float64)
    x[:, 5] = model.reference[5]  # a feature at its reference
    with torch.no_grad():
        ex = model.explain(x)
    assert ex.skipped > 0  # the threshold does prune
    assert ex.efficiency_error().abs().max() < 1e-10
    torch.testing.assert_close(ex.predictions, model(x), atol=1e-10, rtol=0)
    assert torch.equal(ex.values[:, 5], torch.zeros_like(ex.values[:, 5]))
    assert len(ex.skipped_layers) == len(model.layers) and ex.skipped_layers[0] == 0.0


def _idle_share(l1: float) -> float:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(512, 16)).astype(np.float32)
    y = (X[:, 0] + X[:, 1] > 0).astype(np.int64)  # two informative features out of 16
    torch.manual_seed(0)
    model = DeepShapNet(16, 2, channels=8, hidden=(16,))
    fit(model, X, y, epochs=15, batch_size=64, lr=1e-2, l1=l1, reg_layers="all", progress=False)
    model.prune = Pruning(threshold=0.05)
    with torch.no_grad():
        return float(model.explain(torch.as_tensor(X[:256])).skipped)


def test_l1_on_all_layers_leaves_more_modules_idle() -> None:
    plain, sparse = _idle_share(0.0), _idle_share(0.3)
    assert sparse > plain + 0.1, (plain, sparse)
