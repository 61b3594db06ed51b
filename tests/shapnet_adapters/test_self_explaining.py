"""Every adapter takes any self-explaining model: HarsanyiNets and FastSHAP as well as ShapNets."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from shapnet import FastSHAP, HarsanyiNet, VisionHarsanyiNet
from shapnet_adapters import ShapNetAttribution, ShapNetExplainer, explain_func


def _models() -> list[torch.nn.Module]:
    torch.manual_seed(0)
    mlp = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    return [HarsanyiNet(6, 3, hidden=(16, 16)).eval(), FastSHAP(mlp, input_shape=(6,), hidden=(16,))]


@pytest.mark.parametrize("model", _models(), ids=["harsanyi", "fastshap"])
def test_captum_and_shap_run_unchanged(model: torch.nn.Module) -> None:
    x = torch.randn(8, 6)
    expected = model.explain(x).values.detach()
    attr, delta = ShapNetAttribution(model).attribute(x, target=1, return_convergence_delta=True)
    torch.testing.assert_close(attr, expected[:, :, 1])
    assert delta.abs().max() < 1e-5
    ex = ShapNetExplainer(model)(x.numpy())
    np.testing.assert_allclose(ex.values, expected.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ex.values.sum(1) + ex.base_values, model(x).detach().numpy(), atol=1e-5)


def test_quantus_explain_func_on_images() -> None:
    torch.manual_seed(0)
    model = VisionHarsanyiNet(1, 3, image_size=6, channels=4).eval()
    x = np.random.default_rng(0).random((4, 1, 6, 6)).astype(np.float32)
    targets = np.array([0, 1, 2, 0])
    out = explain_func(model=model, inputs=x, targets=targets)
    per_pixel = model.explain(torch.from_numpy(x)).values.detach().numpy()  # (B, H, W, K)
    np.testing.assert_allclose(out[:, 0], per_pixel[np.arange(4), :, :, targets], rtol=1e-5, atol=1e-6)


def test_what_needs_a_shapnet_says_so_for_fastshap() -> None:
    import io

    from shapnet_adapters.captum import LayerShapNetAttribution
    from shapnet_adapters.shap import ShapNetModel

    fastshap = _models()[1]
    out = io.BytesIO()
    with pytest.raises(TypeError, match=r"shapnet\.save checkpoint.*got a FastSHAP"):
        ShapNetModel(fastshap).save(out)
    assert out.getvalue() == b""  # refused before anything is written
    with pytest.raises(TypeError, match="needs a model with Shapley layers.*got a FastSHAP"):
        LayerShapNetAttribution(fastshap, 0)
