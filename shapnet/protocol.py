"""What the adapters need from a model that explains itself.

A *self-explaining model* is an ``nn.Module`` whose ``explain(x)`` returns the Shapley values of its own
prediction against its reference, as a :class:`~shapnet.explanation.ShapleyExplanation`. Every ShapNet
(:class:`~shapnet.ShallowShapNet`, :class:`~shapnet.DeepShapNet`, :class:`~shapnet.VisionShapNet`), both
HarsanyiNets and a trained :class:`~shapnet.FastSHAP` wrapper satisfy it, and so can a model of your own:
``ShapNetAttribution`` (Captum), ``ShapNetExplainer`` (shap), ``explain_func`` (Quantus), the benchmarks and
batch explanation take any of them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol, TypeGuard, runtime_checkable

import torch

from .explanation import ShapleyExplanation

__all__ = ["SelfExplaining", "accepts_any_baseline", "is_self_explaining"]


@runtime_checkable
class SelfExplaining(Protocol):
    """The protocol, checked structurally (``isinstance(model, SelfExplaining)``).

    Attributes:
        input_shape: the shape of one sample, ``(F,)`` for tables or ``(C, H, W)`` for images.
        reference: the baseline the values are computed against, broadcastable to ``input_shape``.
        n_outputs: ``K``, the number of outputs (logits) of ``forward``.
        exact_for_any_baseline: True when ``explain(x, baseline=b)`` is exact for every ``b`` (a
            Shallow ShapNet); False when only the model's own reference is accepted (the reference is part
            of the model, and another baseline raises a ``ValueError``). Optional: a model without the
            attribute accepts only its reference.
    """

    input_shape: tuple[int, ...]
    reference: torch.Tensor

    @property
    def n_outputs(self) -> int: ...

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, K)`` for ``x`` of shape ``(B, *input_shape)``."""

    def explain(
        self, x: torch.Tensor, *, baseline: object = None, layers: bool = False
    ) -> ShapleyExplanation:
        """Shapley values ``(B, F, K)`` (tables) or ``(B, H, W, K)`` (per pixel) of ``self(x)``."""

    # What every nn.Module has, and the adapters use: the mode, the weights and their dtype.
    training: bool

    def eval(self) -> Any: ...

    def parameters(self, recurse: bool = True) -> Iterator[torch.nn.Parameter]: ...

    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, Any]: ...


def is_self_explaining(model: object) -> TypeGuard[SelfExplaining]:
    """True if ``model`` is an ``nn.Module`` that satisfies :class:`SelfExplaining`."""
    return isinstance(model, torch.nn.Module) and isinstance(model, SelfExplaining)


def accepts_any_baseline(model: object) -> bool:
    """True if ``model.explain`` is exact for any baseline (see :class:`SelfExplaining`)."""
    return bool(getattr(model, "exact_for_any_baseline", False))
