"""L1 / L-infinity penalties on explanations."""

from __future__ import annotations

import pytest
import torch

from shapnet import DeepShapNet
from shapnet.regularizers import explanation_penalty, l1_penalty, linf_penalty


def test_penalties_on_known_values() -> None:
    values = torch.tensor([[[1.0, -1.0], [0.5, 0.0], [0.0, -3.0]], [[0.0, 0.0], [2.0, 0.0], [0.0, 0.0]]])
    assert l1_penalty(values).item() == pytest.approx((5.5 + 2.0) / 2)
    assert linf_penalty(values).item() == pytest.approx((3.0 + 2.0) / 2)


def test_layer_scopes_and_gradients() -> None:
    model = DeepShapNet(8, 2, channels=4, hidden=(8,))
    ex = model.explain(torch.randn(5, 8), layers=True)
    last, every = explanation_penalty(ex, "l1"), explanation_penalty(ex, "l1", layers="all")
    assert every > last > 0
    every.backward()
    assert all(p.grad is not None for p in model.parameters() if p is not model.bias)
    with pytest.raises(ValueError, match="layers=True"):
        explanation_penalty(model.explain(torch.randn(2, 8)), "linf", layers="all")
    with pytest.raises(ValueError, match="'l1' or 'linf'"):
        explanation_penalty(ex, "l2")
