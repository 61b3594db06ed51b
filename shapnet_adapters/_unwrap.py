"""Find the self-explaining model inside what a user passes to an adapter (itself or a parallel wrapper)."""

from __future__ import annotations

from torch import nn

from shapnet import SelfExplaining, is_self_explaining

__all__ = ["as_shapnet"]


def as_shapnet(model: object, who: str) -> SelfExplaining:
    """``model`` itself if it explains itself (:class:`shapnet.SelfExplaining`: a ShapNet, a HarsanyiNet, a
    trained :class:`shapnet.FastSHAP`, or a model of your own), or the one that ``nn.DataParallel`` or
    ``DistributedDataParallel`` wraps (their ``module``); else TypeError naming ``who`` needs it."""
    inner = model
    while isinstance(inner, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
        inner = inner.module
    if is_self_explaining(inner):
        return inner
    raise TypeError(
        f"{who} needs a ShapNet (ShallowShapNet, DeepShapNet or VisionShapNet) or another self-explaining "
        "model (shapnet.SelfExplaining: HarsanyiNet, FastSHAP), or one wrapped in nn.DataParallel / "
        f"DistributedDataParallel, got {type(model).__name__}. Other models have no built-in Shapley values: "
        "use a model-agnostic method (e.g. captum.attr.ShapleyValueSampling) or wrap them in shapnet.FastSHAP."
    )
