"""A ShapNet as a Captum attribution method: ``ShapNetAttribution(model).attribute(x, target=k)``.

The attributions are the Shapley values the model computes in its own forward pass (one explained forward
per call, no sampling, no gradients), laid out as Captum expects: per target, the input's shape.
"""

from __future__ import annotations

from typing import Union

import torch
from captum.attr import Attribution
from captum.log import log_usage

from shapnet import ShapNet

__all__ = ["ShapNetAttribution", "TargetType"]

# Every target form Captum accepts for a (B, K) output (see ShapNetAttribution.attribute).
TargetType = Union[None, int, tuple, torch.Tensor, list]
TensorOrTuple = Union[torch.Tensor, tuple]


class ShapNetAttribution(Attribution):
    """Captum attribution method returning a ShapNet's own Shapley values.

    Works wherever Captum expects an :class:`~captum.attr.Attribution`: on its own, inside
    :class:`~captum.attr.NoiseTunnel` (``smoothgrad``, ``smoothgrad_sq``, ``vargrad``), and as the
    ``explanation_func`` of :func:`captum.metrics.sensitivity_max` (``attribution.attribute``).

    Args:
        model: a :class:`shapnet.ShallowShapNet`, :class:`shapnet.DeepShapNet` or
            :class:`shapnet.VisionShapNet`. It is stored as ``forward_func`` (Captum's metrics and
            ``NoiseTunnel`` call it), so ``forward_func(x)`` returns the logits ``(B, K)``.

    Example:
        >>> attribution = ShapNetAttribution(model)
        >>> attr, delta = attribution.attribute(x, target=0, return_convergence_delta=True)
        >>> attr.shape == x.shape, float(delta.abs().max()) < 1e-4
        (True, True)
    """

    def __init__(self, model: ShapNet) -> None:
        if not isinstance(model, ShapNet):
            raise TypeError(
                "ShapNetAttribution needs a ShapNet (ShallowShapNet, DeepShapNet or VisionShapNet), got "
                f"{type(model).__name__}. Other models have no built-in Shapley values: use a Captum method "
                "such as captum.attr.ShapleyValueSampling for them."
            )
        super().__init__(model)

    @property
    def model(self) -> ShapNet:
        """The explained ShapNet (the same object as ``forward_func``)."""
        return self.forward_func

    @property
    def multiplies_by_inputs(self) -> bool:
        """True: like Integrated Gradients' global attributions, Shapley values already account for
        ``x - baseline`` (they sum to ``F(x) - F(baseline)``)."""
        return True

    def has_convergence_delta(self) -> bool:
        return True

    @log_usage()
    def attribute(
        self,
        inputs: TensorOrTuple,
        baselines: object = None,
        target: TargetType = None,
        additional_forward_args: object = None,
        return_convergence_delta: bool = False,
    ) -> TensorOrTuple | tuple[TensorOrTuple, torch.Tensor]:
        """Shapley values of ``model(inputs)[target]``, one per input element.

        Args:
            inputs: ``(B, *input_shape)``, or a tuple holding that one tensor (a ShapNet has one input).
            baselines: None or ``model.reference`` (the model's own values); a scalar or a tensor of shape
                ``(F,)``, ``(1, F)`` or ``(B, F)`` (images: broadcastable to ``(B, C, H, W)``); or a
                1-tuple of one of those. A :class:`~shapnet.ShallowShapNet` is exact for any baseline;
                Deep and Vision ShapNets accept only their own reference and raise ValueError otherwise.
            target: which output to explain, in any form Captum accepts: an int (every row), a 1-tuple
                ``(k,)``, a list of ``B`` ints or 1-tuples, or a tensor of one index or ``B`` indices
                (per row). Negative indices count from the end. None is allowed only when ``K == 1``.
            additional_forward_args: must be None: a ShapNet's forward takes only ``x``.
            return_convergence_delta: also return ``delta`` (see below).

        Returns:
            Attributions with the input's shape, ``(B, *input_shape)`` (a tensor for a tensor, a 1-tuple
            for a tuple). For images, each pixel's value is split equally over its ``C`` channels
            (:meth:`shapnet.ShapleyExplanation.per_element`). With ``return_convergence_delta=True``:
            ``(attributions, delta)``, ``delta`` of shape ``(B,)`` equal to
            ``sum(attributions) - (F(inputs)[target] - F(baselines)[target])``, zero up to rounding.
        """
        is_tuple = isinstance(inputs, tuple)
        x = _single_tensor(inputs, "inputs")
        if additional_forward_args is not None:
            raise ValueError(
                "ShapNetAttribution does not accept additional_forward_args: a ShapNet's forward takes only "
                f"x, got additional_forward_args of type {type(additional_forward_args).__name__}. Fold extra "
                "arguments into the model (e.g. a wrapper module) before explaining it."
            )
        baseline = _single_baseline(baselines)
        model = self.model
        rows = _target_indices(target, x.shape[0], model.n_outputs)
        with torch.no_grad():
            # The core raises a ValueError explaining why a Deep/Vision ShapNet cannot use another baseline.
            explanation = model.explain(x, baseline=baseline)
            per_element = explanation.per_element()  # (B, *input_shape, K)
            index = rows.to(per_element.device).view(-1, *([1] * (per_element.dim() - 1)))
            index = index.expand(*per_element.shape[:-1], 1)
            attributions = per_element.gather(-1, index).squeeze(-1)  # (B, *input_shape)
        result: TensorOrTuple = (attributions,) if is_tuple else attributions
        if not return_convergence_delta:
            return result
        start = model.reference if baseline is None else baseline
        delta = self.compute_convergence_delta(attributions, start, x, target=target)
        return result, delta

    def compute_convergence_delta(
        self,
        attributions: TensorOrTuple,
        start_point: object,
        end_point: TensorOrTuple,
        target: TargetType = None,
        additional_forward_args: object = None,
    ) -> torch.Tensor:
        """``(B,)``: ``sum(attributions) - (F(end_point)[target] - F(start_point)[target])``, in float64.

        Both model outputs come from separate forward passes, so this checks the attributions against the
        model rather than against themselves.

        Args:
            attributions: ``(B, *input_shape)`` or a 1-tuple of it.
            start_point: the baseline: anything broadcastable to ``end_point`` (scalar, ``(F,)``, ...),
                or a 1-tuple of it.
            end_point: the inputs ``(B, *input_shape)`` or a 1-tuple of it.
            target: as in :meth:`attribute`.
            additional_forward_args: must be None.
        """
        if additional_forward_args is not None:
            raise ValueError("ShapNetAttribution does not accept additional_forward_args (see attribute).")
        attr = _single_tensor(attributions, "attributions")
        x = _single_tensor(end_point, "end_point")
        start = _single_baseline(start_point)
        start = self.model.reference if start is None else start
        start = torch.as_tensor(start, dtype=x.dtype, device=x.device)
        try:
            start = torch.broadcast_to(start, x.shape).contiguous()
        except RuntimeError as err:
            raise ValueError(
                f"start_point must broadcast to the inputs' shape {tuple(x.shape)}, got {tuple(start.shape)}."
            ) from err
        if attr.shape != x.shape:
            raise ValueError(f"attributions must have the inputs' shape {tuple(x.shape)}, got {tuple(attr.shape)}.")
        rows = _target_indices(target, x.shape[0], self.model.n_outputs).to(x.device).unsqueeze(1)
        with torch.no_grad():
            end_out = self.model(x).gather(1, rows).squeeze(1)
            start_out = self.model(start).gather(1, rows).squeeze(1)
        total = attr.flatten(1).to(torch.float64).sum(1)  # flatten: also for an empty batch
        return total - (end_out.to(torch.float64) - start_out.to(torch.float64))


def _single_tensor(value: TensorOrTuple, name: str) -> torch.Tensor:
    """Unwrap Captum's tuple form: a ShapNet has exactly one input tensor."""
    if isinstance(value, tuple):
        if len(value) != 1:
            raise ValueError(
                f"a ShapNet takes one input tensor, so {name} must be a tensor or a 1-tuple, got a tuple of "
                f"{len(value)} elements."
            )
        value = value[0]
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor (or a 1-tuple of one), got {type(value).__name__}.")
    return value


def _single_baseline(baselines: object) -> object:
    """Unwrap a 1-tuple of baselines (``NoiseTunnel`` and ``sensitivity_max`` pass tuples)."""
    if isinstance(baselines, tuple):
        if len(baselines) != 1:
            raise ValueError(
                "a ShapNet takes one input tensor, so baselines must be None, a scalar, a tensor or a "
                f"1-tuple, got a tuple of {len(baselines)} elements."
            )
        return baselines[0]
    return baselines


def _as_index(value: object, what: str) -> int:
    """An output index from an int, a numpy integer or a one-element integer tensor (never a bool)."""
    if isinstance(value, bool):
        raise TypeError(f"{what} must be an int, got a bool ({value!r}).")
    if isinstance(value, int):
        if not -(2**63) <= value < 2**63:  # torch.full would raise a bare OverflowError
            raise ValueError(f"{what} = {value} is not an output index: far outside any model's outputs.")
        return value
    if isinstance(value, torch.Tensor):
        if value.numel() == 1 and not value.is_floating_point() and value.dtype != torch.bool:
            return int(value.item())
    elif hasattr(value, "__index__"):  # numpy integers
        return int(value.__index__())
    raise TypeError(f"{what} must be an int, got {type(value).__name__} ({value!r}).")


def _target_indices(target: TargetType, batch: int, n_outputs: int) -> torch.Tensor:
    """Turn any Captum target form into one output index per row, ``(B,)`` int64 in ``[0, K)``.

    Mirrors Captum's selection for a ``(B, K)`` output: an int or 1-tuple selects that column for every
    row; a list or a 1-D tensor of length ``B`` selects one column per row.
    """
    rows = max(batch, 1)  # scalar targets are range-checked even for an empty batch, then cut to B rows
    if target is None:
        if n_outputs == 1:
            return torch.zeros(batch, dtype=torch.long)
        raise ValueError(
            f"target=None is ambiguous for a model with K = {n_outputs} outputs: pass target=k (an int, the "
            "same output for every row) or a list/tensor of B indices (one per row)."
        )
    if isinstance(target, tuple):
        if len(target) != 1:
            raise ValueError(
                f"a tuple target indexes the output's trailing dimensions; a ShapNet's output (B, K) has one, "
                f"so the tuple must have one element, got {target!r}."
            )
        indices = torch.full((rows,), _as_index(target[0], "target[0]"), dtype=torch.long)
    elif isinstance(target, torch.Tensor):
        if target.is_floating_point() or target.dtype == torch.bool:
            raise TypeError(f"a tensor target must hold integer indices, got dtype {target.dtype}.")
        if target.numel() == 1:
            indices = torch.full((rows,), int(target.item()), dtype=torch.long)
        elif target.dim() == 1 and target.numel() == batch:
            indices = target.detach().to("cpu", torch.long)
        else:
            raise ValueError(
                f"a tensor target must hold one index or one index per row (shape ({batch},)), got shape "
                f"{tuple(target.shape)}."
            )
    elif isinstance(target, list):
        if len(target) != batch:
            raise ValueError(f"a list target needs one entry per row: expected {batch} entries, got {len(target)}.")
        flat = []
        for position, entry in enumerate(target):
            if isinstance(entry, tuple):
                if len(entry) != 1:
                    raise ValueError(
                        f"target[{position}] = {entry!r}: each tuple must have one element (the output index)."
                    )
                entry = entry[0]
            flat.append(_as_index(entry, f"target[{position}]"))
        indices = torch.tensor(flat, dtype=torch.long)
    else:
        indices = torch.full((rows,), _as_index(target, "target"), dtype=torch.long)
    bad = (indices < -n_outputs) | (indices >= n_outputs)
    if bool(bad.any()):
        raise ValueError(
            f"target indices must lie in [{-n_outputs}, {n_outputs - 1}] for a model with K = {n_outputs} "
            f"outputs, got {sorted(set(indices[bad].tolist()))}."
        )
    return (indices % n_outputs)[:batch]
