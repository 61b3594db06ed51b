"""FastSHAP: an amortised explainer trained on the same game as every other method."""

from __future__ import annotations

import pytest
import torch

from shapnet import FastSHAP, ShallowShapNet, Stage, VisionShapNet, is_self_explaining


def _relative_error(estimate: torch.Tensor, exact: torch.Tensor) -> float:
    return float((estimate - exact).norm() / exact.norm())


@pytest.fixture(scope="module")
def additive() -> ShallowShapNet:
    torch.manual_seed(0)
    return ShallowShapNet(5, 2, groups="gam", hidden=(8,), reference=torch.full((5,), 0.5)).eval()


def test_values_are_efficient_before_and_after_training(additive: ShallowShapNet) -> None:
    torch.manual_seed(0)
    explainer = FastSHAP(additive, hidden=(32,))
    x = torch.randn(16, 5)
    for _ in range(2):
        ex = explainer.explain(x)
        torch.testing.assert_close(ex.predictions, additive(x))
        torch.testing.assert_close(ex.base_values, additive(additive.reference.unsqueeze(0)).expand(16, -1))
        assert ex.efficiency_error().abs().max() < 1e-5
        explainer.fit(torch.randn(128, 5), epochs=2, batch_size=32)


def test_training_approaches_the_exact_values(additive: ShallowShapNet) -> None:
    torch.manual_seed(1)
    explainer = FastSHAP(additive, hidden=(64,))
    x = torch.randn(64, 5)
    exact = additive.explain(x).values  # exact for a Shallow ShapNet
    before = _relative_error(explainer.explain(x).values, exact)
    explainer.fit(torch.randn(512, 5), epochs=25, batch_size=64, n_coalitions=8, lr=3e-3)
    after = _relative_error(explainer.explain(x).values, exact)
    assert after < 0.25 < before, (before, after)
    assert explainer.model_evaluations_ > 0 and explainer.training_seconds_ > 0
    assert len(explainer.history_) == 25


def test_the_exact_values_minimise_the_objective(additive: ShallowShapNet) -> None:
    # On an additive game the Kernel SHAP objective is exactly 0 at the Shapley values.
    explainer = FastSHAP(additive, hidden=(8,))
    x = torch.randn(32, 5)
    exact = additive.explain(x).values
    explainer._raw = lambda inputs: additive.explain(inputs).values  # type: ignore[method-assign]
    assert float(explainer._loss(x, 16)) < 1e-10
    explainer._raw = lambda inputs: additive.explain(inputs).values + 0.1 * torch.randn_like(exact)  # type: ignore[method-assign]
    assert float(explainer._loss(x, 16)) > 1e-4


def test_images_explain_per_pixel_and_satisfy_the_protocol() -> None:
    torch.manual_seed(0)
    model = VisionShapNet(1, 3, stages=[Stage(4, hidden=(8,))], image_size=(6, 6), readout_hidden=(8,)).eval()
    explainer = FastSHAP(model, width=8, dilations=(1, 2)).fit(torch.rand(32, 1, 6, 6), epochs=1)
    ex = explainer.explain(torch.rand(2, 1, 6, 6))
    assert ex.values.shape == (2, 6, 6, 3)
    assert ex.efficiency_error().abs().max() < 1e-5
    assert is_self_explaining(explainer)


def test_a_plain_module_needs_its_input_shape() -> None:
    net = torch.nn.Linear(3, 2)
    with pytest.raises(ValueError, match="input_shape"):
        FastSHAP(net)
    explainer = FastSHAP(net, input_shape=(3,))
    assert explainer.n_outputs == 2 and torch.equal(explainer.reference, torch.zeros(3))


def test_other_baselines_and_layers_are_refused(additive: ShallowShapNet) -> None:
    explainer = FastSHAP(additive, hidden=(8,))
    with pytest.raises(ValueError, match="reference"):
        explainer.explain(torch.randn(2, 5), baseline=torch.zeros(5))
    with pytest.raises(ValueError, match="layer"):
        explainer.explain(torch.randn(2, 5), layers=True)
