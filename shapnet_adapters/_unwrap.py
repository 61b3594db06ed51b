"""Find the ShapNet inside what a user passes to an adapter (the model itself or a parallel wrapper)."""

from __future__ import annotations

from torch import nn

from shapnet import ShapNet

__all__ = ["as_shapnet"]


def as_shapnet(model: object, who: str) -> ShapNet:
    """``model`` itself if it is a ShapNet, or the ShapNet that ``nn.DataParallel`` or
    ``DistributedDataParallel`` wraps (their ``module``); else TypeError naming ``who`` needs it."""
    inner = model
    while isinstance(inner, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
        inner = inner.module
    if isinstance(inner, ShapNet):
        return inner
    raise TypeError(
        f"{who} needs a ShapNet (ShallowShapNet, DeepShapNet or VisionShapNet), or one wrapped in "
        f"nn.DataParallel / DistributedDataParallel, got {type(model).__name__}. Other models have no built-in "
        "Shapley values: use a model-agnostic method (e.g. captum.attr.ShapleyValueSampling) for them."
    )
