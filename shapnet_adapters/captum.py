"""A ShapNet as a Captum attribution method: ``ShapNetAttribution(model).attribute(x, target=k)``.

The attributions are the Shapley values the model computes in its own forward pass (one explained forward
per call, no sampling, no gradients), laid out as Captum expects: per target, the input's shape.
"""

from __future__ import annotations

import math

import torch
from captum.attr import Attribution, LayerAttribution
from captum.log import log_usage
from torch import nn

from shapnet import SelfExplaining, ShapleyExplanation, ShapNet, output_indices

from ._unwrap import as_shapnet

__all__ = ["LayerShapNetAttribution", "ShapNetAttribution", "TargetType"]

# Every target form Captum accepts for a (B, K) output (see ShapNetAttribution.attribute).
TargetType = None | int | tuple | torch.Tensor | list
TensorOrTuple = torch.Tensor | tuple


class ShapNetAttribution(Attribution):
    """Captum attribution method returning a ShapNet's own Shapley values.

    Works wherever Captum expects an :class:`~captum.attr.Attribution`: on its own, inside
    :class:`~captum.attr.NoiseTunnel` (``smoothgrad``, ``smoothgrad_sq``, ``vargrad``), and as the
    ``explanation_func`` of :func:`captum.metrics.sensitivity_max` (``attribution.attribute``).

    Args:
        model: a :class:`shapnet.ShallowShapNet`, :class:`shapnet.DeepShapNet` or
            :class:`shapnet.VisionShapNet`, or one wrapped in ``nn.DataParallel`` /
            ``DistributedDataParallel``. It is stored as ``forward_func`` (Captum's metrics and
            ``NoiseTunnel`` call it), so ``forward_func(x)`` returns the logits ``(B, K)``; the values come
            from the wrapped ShapNet (``model``) on its own device.

    Example:
        >>> attribution = ShapNetAttribution(model)
        >>> attr, delta = attribution.attribute(x, target=0, return_convergence_delta=True)
        >>> attr.shape == x.shape, float(delta.abs().max()) < 1e-4
        (True, True)
    """

    def __init__(self, model: ShapNet | nn.Module) -> None:
        self._shapnet = as_shapnet(model, "ShapNetAttribution")
        super().__init__(model)

    @property
    def model(self) -> SelfExplaining:
        """The explained ShapNet (``forward_func`` itself, or the module a parallel wrapper holds)."""
        return self._shapnet

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
        *,
        internal_batch_size: int | None = None,
        feature_mask: TensorOrTuple | None = None,
        show_progress: bool = False,
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
            internal_batch_size: rows per explained forward pass (bounds memory, as in Captum's methods);
                None: all rows at once. The values do not depend on it.
            feature_mask: Captum's grouping of input elements into players. A ShapNet's players are fixed
                (tabular features; image pixels, all channels of a pixel together), so the mask may only
                name those: one id per feature, or for images one id per pixel shared by its channels. As in
                Captum's perturbation methods, every element of a group then receives the group's value (for
                images: each channel the whole pixel's value). Any other grouping defines another game,
                whose values the model does not compute: ValueError.
            show_progress: accepted for Captum's API; no effect (one pass, nothing to show).

        Returns:
            Attributions with the input's shape, ``(B, *input_shape)`` (a tensor for a tensor, a 1-tuple
            for a tuple). For images, each pixel's value is split equally over its ``C`` channels
            (:meth:`shapnet.ShapleyExplanation.per_element`). With ``return_convergence_delta=True``:
            ``(attributions, delta)``, ``delta`` of shape ``(B,)`` equal to
            ``sum(attributions) - (F(inputs)[target] - F(baselines)[target])``, zero up to rounding.
        """
        is_tuple = isinstance(inputs, tuple)
        x = _single_tensor(inputs, "inputs")
        step = _check_batch_size(internal_batch_size, x.shape[0])
        whole_pixels = feature_mask is not None and _check_feature_mask(feature_mask, x, self.model)
        if not isinstance(show_progress, bool):
            raise TypeError(f"show_progress must be a bool, got {type(show_progress).__name__}.")
        if additional_forward_args is not None:
            raise ValueError(
                "ShapNetAttribution does not accept additional_forward_args: a ShapNet's forward takes only "
                f"x, got additional_forward_args of type {type(additional_forward_args).__name__}. Fold extra "
                "arguments into the model (e.g. a wrapper module) before explaining it."
            )
        baseline = _single_baseline(baselines)
        model = self.model
        rows = _target_indices(target, x.shape[0], model.n_outputs)
        parts = []
        with torch.no_grad():
            for start in range(0, max(x.shape[0], 1), step):  # one pass for an empty batch too
                chunk = slice(start, start + step)
                # The core raises a ValueError explaining why a Deep/Vision ShapNet cannot use another baseline.
                explanation = model.explain(x[chunk], baseline=_rows(baseline, chunk, x.shape[0]))
                per_element = explanation.per_element()  # (b, *input_shape, K)
                if (
                    whole_pixels
                ):  # every channel of a pixel gets the pixel's value (Captum's group convention)
                    per_element = per_element * per_element.shape[1]
                index = rows[chunk].to(per_element.device).view(-1, *([1] * (per_element.dim() - 1)))
                index = index.expand(*per_element.shape[:-1], 1)
                parts.append(per_element.gather(-1, index).squeeze(-1))  # (b, *input_shape)
        attributions = torch.cat(parts)  # (B, *input_shape)
        result: TensorOrTuple = (attributions,) if is_tuple else attributions
        if not return_convergence_delta:
            return result
        start_point = model.reference if baseline is None else baseline
        delta = self.compute_convergence_delta(
            attributions / (x.shape[1] if whole_pixels else 1), start_point, x, target=target
        )
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
            raise ValueError(
                f"attributions must have the inputs' shape {tuple(x.shape)}, got {tuple(attr.shape)}."
            )
        rows = _target_indices(target, x.shape[0], self.model.n_outputs).to(x.device).unsqueeze(1)
        with torch.no_grad():
            end_out = self.model(x).gather(1, rows).squeeze(1)
            start_out = self.model(start).gather(1, rows).squeeze(1)
        total = attr.flatten(1).to(torch.float64).sum(1)  # flatten: also for an empty batch
        return total - (end_out.to(torch.float64) - start_out.to(torch.float64))


def _check_batch_size(value: object, batch: int) -> int:
    """``internal_batch_size`` as a positive row count (all rows for None)."""
    if value is None:
        return max(batch, 1)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"internal_batch_size must be None or a positive int, got {value!r}.")
    return value


def _rows(baseline: object, chunk: slice, batch: int) -> object:
    """The rows of a per-row baseline ``(B, ...)`` that belong to ``chunk``; other baselines unchanged."""
    if (
        isinstance(baseline, torch.Tensor)
        and baseline.dim() >= 2
        and baseline.shape[0] == batch
        and batch > 1
    ):
        return baseline[chunk]
    return baseline


def _check_feature_mask(feature_mask: TensorOrTuple, x: torch.Tensor, model: SelfExplaining) -> bool:
    """Validate that ``feature_mask`` names the model's own players; True when it groups image channels by
    pixel (each channel then takes the pixel's whole value), False when every element is its own group."""
    mask = _single_tensor(feature_mask, "feature_mask")
    if mask.is_floating_point() or mask.dtype == torch.bool:
        raise TypeError(f"feature_mask must hold integer group ids, as in Captum, got dtype {mask.dtype}.")
    try:
        mask = torch.broadcast_to(mask, x.shape).reshape(x.shape[0], x.shape[1], -1)  # (B, C or F, H*W or 1)
    except RuntimeError as err:
        raise ValueError(
            f"feature_mask must broadcast to the inputs' shape {tuple(x.shape)}, got {tuple(mask.shape)}."
        ) from err
    image = len(model.input_shape) == 3
    players = mask[:, 0] if image else mask[..., 0]  # (B, H*W) pixel ids, or (B, F) feature ids
    same_per_pixel = not image or bool((mask == mask[:, :1]).all())
    distinct = all(len(torch.unique(row)) == row.numel() for row in players)
    if not (same_per_pixel and distinct):
        what = "one id per pixel, shared by its channels" if image else "a different id for every feature"
        raise ValueError(
            f"feature_mask may only name the ShapNet's own players ({what}): a ShapNet computes the Shapley "
            "values of the game whose players are its input features (pixels for images), and a mask that "
            "groups several of them defines another game, whose values the model does not compute. Drop "
            "feature_mask, or use captum.attr.ShapleyValueSampling(model) with it for sampled group values."
        )
    return image and x.shape[1] > 1


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


def _target_indices(target: TargetType, batch: int, n_outputs: int) -> torch.Tensor:
    """Turn any Captum target form into one output index per row, ``(B,)`` int64 in ``[0, K)``.

    Mirrors Captum's selection for a ``(B, K)`` output: an int or 1-tuple selects that column for every
    row; a list (of ints or 1-tuples) or a 1-D tensor of length ``B`` selects one column per row. Captum's
    tuples are unwrapped here; :func:`shapnet.output_indices` reads and checks the rest.
    """
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
        target = target[0]
        shape = getattr(target, "shape", None)  # a tensor or an array
        if shape is not None and math.prod(shape) != 1:
            raise TypeError(
                "a tuple target holds one output index (an int) for every row; for one target per row pass "
                f"a list or a (B,) tensor, got a tuple holding shape {tuple(shape)}."
            )
    elif isinstance(target, list):
        if len(target) != batch:
            raise ValueError(
                f"a list target needs one entry per row: expected {batch} entries, got {len(target)}."
            )
        for position, entry in enumerate(target):
            if isinstance(entry, tuple) and len(entry) != 1:
                raise ValueError(
                    f"target[{position}] = {entry!r}: each tuple must have one element (the output index)."
                )
        target = [entry[0] if isinstance(entry, tuple) else entry for entry in target]
    indices = output_indices(target, batch, n_outputs)
    return torch.full((batch,), indices, dtype=torch.long) if isinstance(indices, int) else indices.cpu()


class LayerShapNetAttribution(LayerAttribution):
    """The Shapley values of any layer of a ShapNet: the paper's layer-wise explanations, through Captum.

    Layer ``l`` of a Deep or Vision ShapNet carries a Shapley representation ``Phi^(l)``: one vector of
    ``C_l`` channels per input feature (pixel), the output of layer ``l`` after its residual (DESIGN §4).
    ``attribute`` returns it, as ``model.explain(x, layers=True).layers[l]`` holds it, in the layout of the
    layer's output (as Captum's layer methods do): ``(B, F, C_l)`` for tabular models (padding features
    dropped), ``(B, C_l, H, W)`` for images. The last layer's channels are the model's outputs, so there
    ``target`` picks the output and the result is ``(B, F)`` / ``(B, H, W)``: the model's own explanation.

    Args:
        model: a ShapNet (or one wrapped in ``nn.DataParallel`` / ``DistributedDataParallel``).
        layer: a Shapley layer of the model (``model.layers[l]``, ``model.stages[l]``, ``model.layer`` of a
            Shallow ShapNet) or its index ``l``.
        device_ids: Captum's argument, unused (the values come from one explained pass of the ShapNet).

    Example:
        >>> attribution = LayerShapNetAttribution(model, model.layers[1])
        >>> phi = attribution.attribute(x)  # (B, F, C_1)
    """

    def __init__(
        self, model: ShapNet | nn.Module, layer: nn.Module | int, device_ids: list[int] | None = None
    ) -> None:
        shapnet = as_shapnet(model, "LayerShapNetAttribution")
        layers = _shapley_layers(shapnet)
        if isinstance(layer, bool) or not isinstance(layer, (int, nn.Module)):
            raise TypeError(
                f"layer must be a Shapley layer of the model or its index, got {type(layer).__name__}."
            )
        if isinstance(layer, int):
            if not -len(layers) <= layer < len(layers):
                raise ValueError(f"layer index must lie in [{-len(layers)}, {len(layers) - 1}], got {layer}.")
            index = layer % len(layers)
        else:
            matches = [i for i, candidate in enumerate(layers) if candidate is layer]
            if not matches:
                raise ValueError(
                    f"layer must be one of the model's {len(layers)} Shapley layers ({type(layers[0]).__name__}s "
                    f"in {'model.layer' if len(layers) == 1 else 'model.layers / model.stages'}), got "
                    f"a {type(layer).__name__} that is not one of them."
                )
            index = matches[0]
        self._shapnet, self.index = shapnet, index
        super().__init__(model, layers[index], device_ids)

    @property
    def model(self) -> SelfExplaining:
        return self._shapnet

    @property
    def multiplies_by_inputs(self) -> bool:
        return True

    def has_convergence_delta(self) -> bool:
        return False

    @log_usage()
    def attribute(
        self,
        inputs: TensorOrTuple,
        target: TargetType = None,
        additional_forward_args: object = None,
        attribute_to_layer_input: bool = False,
        *,
        internal_batch_size: int | None = None,
    ) -> torch.Tensor:
        """The layer's Shapley representation at ``inputs``.

        Args:
            inputs: ``(B, *input_shape)`` or a 1-tuple of it.
            target: None for every channel; else the channel (for the last layer: the output) to return, in
                any of Captum's forms (see :meth:`ShapNetAttribution.attribute`).
            additional_forward_args: must be None.
            attribute_to_layer_input: return the representation the layer receives, ``Phi^(l-1)``
                (``x - reference`` for the first layer), instead of its own.
            internal_batch_size: rows per explained pass; None: all at once.

        Returns:
            ``(B, F, C)`` (tabular) or ``(B, C, H, W)`` (images), or without the channel axis for a target.
        """
        x = _single_tensor(inputs, "inputs")
        if additional_forward_args is not None:
            raise ValueError(
                "LayerShapNetAttribution does not accept additional_forward_args (see ShapNetAttribution)."
            )
        step = _check_batch_size(internal_batch_size, x.shape[0])
        index = self.index - 1 if attribute_to_layer_input else self.index
        parts = []
        with torch.no_grad():
            for start in range(0, max(x.shape[0], 1), step):  # one pass for an empty batch too
                chunk = x[start : start + step]
                parts.append(_representation(self.model, chunk, index))
        phi = torch.cat(parts)  # (B, F, C) or (B, H, W, C): channel-last
        if target is not None:
            rows = _target_indices(target, x.shape[0], phi.shape[-1]).to(phi.device)
            index_t = rows.view(-1, *([1] * (phi.dim() - 1))).expand(*phi.shape[:-1], 1)
            return phi.gather(-1, index_t).squeeze(-1)
        return phi.permute(0, 3, 1, 2) if phi.dim() == 4 else phi


def _shapley_layers(model: SelfExplaining) -> list[nn.Module]:
    """The model's Shapley layers in order: ``layers`` (Deep), ``stages`` (Vision) or the single ``layer``."""
    for name in ("layers", "stages"):
        found = getattr(model, name, None)
        if isinstance(found, nn.ModuleList):
            return list(found)
    layer = getattr(model, "layer", None)  # a ShallowShapNet's one ShapleyLayer
    if isinstance(layer, nn.Module):
        return [layer]
    raise TypeError(
        f"LayerShapNetAttribution needs a model with Shapley layers (model.layers, model.stages or "
        f"model.layer: a ShapNet), got a {type(model).__name__}."
    )


def _representation(model: SelfExplaining, x: torch.Tensor, index: int) -> torch.Tensor:
    """``Phi^(index)`` channel-last: ``(B, F, C)`` or ``(B, H, W, C)``; ``index = -1`` is ``x - reference``."""
    if index < 0:
        delta = x - model.reference.to(x)
        return delta.unsqueeze(-1) if delta.dim() == 2 else delta.permute(0, 2, 3, 1)
    explanation: ShapleyExplanation = model.explain(x, layers=True)
    assert explanation.layers is not None  # asked for with layers=True
    return explanation.layers[index]
