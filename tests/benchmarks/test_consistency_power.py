"""The consistency benchmark's permutation estimate credits the right pixel (issue #18 item 9).

Only its sum was checked before, which is the same for any assignment of contributions to pixels.
"""

from __future__ import annotations

import pytest
import torch

from benchmarks import consistency
from shapnet import Stage, VisionShapNet, exact_shapley


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_permutation_estimate_is_exact_for_a_model_additive_over_pixels(dtype: torch.dtype) -> None:
    """With no hidden stage, a VisionShapNet is a sum of per-pixel functions: every permutation walk credits
    each pixel with exactly its own term, which is the model's built-in explanation."""
    torch.manual_seed(0)
    model = VisionShapNet(2, 3, stages=[], image_size=(3, 4), readout_hidden=(5,), reference=[0.3, -0.2])
    model = model.to(dtype).eval()
    x = torch.randn(2, 3, 4, dtype=dtype)
    est, se = consistency.permutation_estimate(model, x, 2, 4, torch.Generator().manual_seed(0))
    with torch.no_grad():
        own = model.explain(x.unsqueeze(0)).values[0, :, :, 2].reshape(-1)
    tol = 1e-5 if dtype == torch.float32 else 1e-10
    torch.testing.assert_close(est.to(dtype), own, rtol=0, atol=tol)
    assert float(se.max()) <= tol


def test_permutation_estimate_converges_to_the_exact_pixel_values_on_float64() -> None:
    torch.manual_seed(1)
    model = VisionShapNet(1, 2, stages=[Stage(3, hidden=(6,))], image_size=(2, 2), readout_hidden=(4,))
    model = model.double().eval()
    x = torch.randn(1, 2, 2, dtype=torch.float64)
    # the exact per-pixel Shapley values of output 1, by brute force over the 2**4 pixel coalitions
    exact = exact_shapley(lambda z: model(z.view(-1, 1, 2, 2))[:, 1], x.view(1, 4), model.reference.view(1, 4))
    est, se = consistency.permutation_estimate(model, x, 1, 400, torch.Generator().manual_seed(0))
    err = (est.double() - exact.view(4)).abs()
    assert bool((err <= 5 * se.double() + 1e-9).all()), (est, exact.view(4), se)
    assert float(err.max()) < 0.05 * float(exact.abs().max())
