"""Tiny ShapNets shared by the adapter tests (seeded by the root conftest's autouse fixture)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from shapnet import DeepShapNet, ShallowShapNet, ShapNet, Stage, VisionShapNet

N_FEATURES = 5
N_OUTPUTS = 3


def build_model(kind: str, n_outputs: int = N_OUTPUTS) -> ShapNet:
    """A tiny model of each kind, in eval mode, with a non-zero reference (so baselines matter)."""
    if kind == "shallow":
        model = ShallowShapNet(N_FEATURES, n_outputs, hidden=(8,), reference=torch.linspace(-0.5, 0.5, N_FEATURES))
    elif kind == "deep":
        model = DeepShapNet(N_FEATURES, n_outputs, channels=4, hidden=(8,), reference=torch.full((N_FEATURES,), 0.25))
    elif kind == "vision":
        model = VisionShapNet(
            1, n_outputs, stages=[Stage(4, hidden=(8,))], image_size=(8, 8), readout_hidden=(8,), reference=0.1
        )
    else:  # pragma: no cover
        raise ValueError(kind)
    return model.eval()


@pytest.fixture
def make_model() -> Callable[..., ShapNet]:
    """``make_model(kind, n_outputs=3)`` with kind in {"shallow", "deep", "vision"}."""
    return build_model


@pytest.fixture(params=["shallow", "deep", "vision"])
def kind(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def model(kind: str) -> ShapNet:
    return build_model(kind)


@pytest.fixture
def shallow() -> ShapNet:
    return build_model("shallow")


@pytest.fixture
def vision() -> ShapNet:
    return build_model("vision")
