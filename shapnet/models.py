"""Shallow, Deep and Vision ShapNets (DESIGN §3-5).

Every model maps ``forward(x) -> (B, K)`` logits and ``explain(x) -> ShapleyExplanation``. The Shapley
values are computed in the same pass as the prediction, so they cost nothing extra at test time.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, cast

import torch
from torch import nn

from ._backends import compiled
from ._validation import check_input, check_int, check_int_pair, check_positive_int, check_reference
from .explanation import ShapleyExplanation
from .groups import butterfly_groups, disjoint_groups, gam_groups, padded_size, pair_groups
from .layers import LayerOutput, ShapleyConv2d, ShapleyLayer, normalize_groups, watched
from .pruning import Pruning, as_pruning, prune_features

__all__ = ["DeepShapNet", "ShallowShapNet", "ShapNet", "Stage", "VisionShapNet"]


def _as_baseline(baseline: object, x: torch.Tensor) -> torch.Tensor:
    """``baseline`` as a real tensor in ``x``'s dtype and device (complex is refused, never truncated)."""
    if isinstance(baseline, complex) or torch.as_tensor(baseline).is_complex():
        raise TypeError("baseline must be real, got complex values.")
    return torch.as_tensor(baseline, dtype=x.dtype, device=x.device)


def _check_widths(widths: object, name: str) -> list[int]:
    """A sequence of positive ints (hidden widths, channels per stage)."""
    if isinstance(widths, (str, bytes)) or not isinstance(widths, Sequence):
        raise TypeError(
            f"{name} must be a sequence of positive ints, got {type(widths).__name__} ({widths!r})."
        )
    return [check_int(w, f"{name}[{i}]", min_val=1) for i, w in enumerate(widths)]


class ShapNet(nn.Module, ABC):
    """What every ShapNet shares: input checks, ``forward`` from ``explain``, and a saved config.

    Subclasses implement :meth:`_explain` on validated input.
    """

    input_shape: tuple[int, ...]
    reference: torch.Tensor
    #: Whether ``explain(x, baseline=b)`` is exact for any ``b`` (see :class:`shapnet.SelfExplaining`).
    exact_for_any_baseline: bool = False

    def __init__(self, **config: object) -> None:
        super().__init__()
        self._config: dict[str, Any] = config  # JSON-like constructor arguments

    @property
    def config(self) -> dict:
        """Constructor arguments (JSON-like), for :func:`shapnet.save`."""
        return dict(self._config)

    @property
    def n_outputs(self) -> int:
        value: Any = self._config.get("n_outputs", self._config.get("n_classes"))  # every model sets one
        return int(value)

    @property
    def prune(self) -> Pruning | None:
        """Dynamic pruning between layers (DESIGN §6), None when off.

        Assign a fraction, a dict of :class:`~shapnet.pruning.Pruning` fields, a ``Pruning`` or None to
        change it on a built model (``model.prune = 0.5``); the change shows in ``repr`` and ``config``.
        """
        return getattr(self, "pruning", None)

    @prune.setter
    def prune(self, value: float | dict | Pruning | None) -> None:
        pruning = as_pruning(value)
        self._check_pruning(pruning)
        self.pruning = pruning
        self._config["prune"] = None if pruning is None else pruning.to_dict()

    def _check_pruning(self, pruning: Pruning | None) -> None:
        """Raise if this model cannot apply ``pruning``."""
        if pruning is not None:
            raise ValueError(
                f"{type(self).__name__} has a single Shapley layer, so there is nothing to prune between "
                "layers; pruning works on DeepShapNet and VisionShapNet."
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, K)`` for ``x`` of shape ``(B, *input_shape)`` in the model's dtype and device."""
        x = self._check_input(x)
        if x.shape[0] == 0:
            # The layers need at least one row: run the reference and keep none of it, so an empty batch gets
            # an empty (0, K) result on every path (compiled, torch, any activation).
            return self._predict(self.reference.to(x).unsqueeze(0))[:0]
        return self._predict(x)

    def _check_input(self, x: object) -> torch.Tensor:
        return check_input(x, self.input_shape, dtype=self.reference.dtype, device=self.reference.device)

    def _predict(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of validated ``x``; subclasses may skip computing values that a prediction does not need."""
        return self._explain(x, None, False).predictions

    def explain(
        self, x: torch.Tensor, *, baseline: object = None, layers: bool = False
    ) -> ShapleyExplanation:
        """Shapley values of the prediction at ``x``.

        Args:
            x: ``(B, *input_shape)``.
            baseline: None (the model's reference) or a baseline broadcastable to ``x`` (a tensor, an array
                or a number): any baseline is exact for a :class:`ShallowShapNet`; Deep and Vision ShapNets
                accept only their own reference.
            layers: also return every layer's representation.
        """
        x = self._check_input(x)
        checked = None if baseline is None else self._check_baseline(baseline, x)
        if (
            x.shape[0] == 0
        ):  # as in forward: explain one reference row and keep none (right shapes everywhere)
            return self._explain(self.reference.to(x).unsqueeze(0), None, layers)[:0]
        return self._explain(x, checked, layers)

    def _check_baseline(self, baseline: object, x: torch.Tensor) -> torch.Tensor | None:
        base = _as_baseline(baseline, x)
        ref = self.reference.to(x)
        try:
            # A tolerance, not ==: a reference recomputed elsewhere (a training mean in float32) differs in
            # its last bits; the values are then computed against the model's own reference.
            same = torch.allclose(torch.broadcast_to(base, x.shape), ref.expand_as(x), rtol=1e-5, atol=1e-6)
        except RuntimeError as err:
            raise ValueError(
                f"baseline must broadcast to the input's shape {tuple(x.shape)}, got {tuple(base.shape)}."
            ) from err
        if same:
            return None
        raise ValueError(
            f"{type(self).__name__} cannot explain against a baseline other than its own reference: in a "
            "deep ShapNet the reference is part of the model (every layer after the first treats 0 as "
            "'absent'), so values against another baseline are not defined (the baseline must equal the "
            "reference up to rtol=1e-5, atol=1e-6). Pass baseline=None, or "
            "model.reference, or train the model with the reference you need (or use a ShallowShapNet, "
            "which is exact for any baseline)."
        )

    @abstractmethod
    def _explain(self, x: torch.Tensor, baseline: torch.Tensor | None, layers: bool) -> ShapleyExplanation:
        """The explained forward pass on validated ``x``; ``baseline`` is None or already checked."""


class ShallowShapNet(ShapNet):
    """A single Shapley layer whose output is the prediction: ``y = sum_m f_m(x_{G_m})``.

    Its explanation is *exact* for any reference, so ``explain(x, baseline=...)`` works for any baseline.

    Args:
        n_features: ``F``.
        n_outputs: ``K``.
        groups: ``"gam"`` (one module per feature), ``"disjoint"`` (consecutive groups of
            ``group_size``), ``"pairs"`` (all pairs) or an explicit list of index tuples.
        group_size: for ``"disjoint"``.
        hidden: hidden widths of each module's MLP.
        activation: inner activation.
        reference: ``(F,)``; default zeros.

    Shape:
        ``x``: ``(B, F)``; ``forward``: ``(B, K)``; ``explain(x).values``: ``(B, F, K)``.
    """

    exact_for_any_baseline = True

    def __init__(
        self,
        n_features: int,
        n_outputs: int,
        *,
        groups: str | Sequence[Sequence[int]] = "pairs",
        group_size: int = 2,
        hidden: Sequence[int] = (64,),
        activation: str = "relu",
        reference: object = None,
    ) -> None:
        check_positive_int(n_features, "n_features")
        check_positive_int(n_outputs, "n_outputs")
        group_size = check_int(group_size, "group_size", min_val=1, max_val=10)
        hidden = _check_widths(hidden, "hidden")
        if isinstance(groups, str):
            builders = {
                "gam": lambda: gam_groups(n_features),
                "disjoint": lambda: disjoint_groups(n_features, group_size),
                "pairs": lambda: pair_groups(n_features) if n_features > 1 else gam_groups(1),
            }
            if groups not in builders:
                raise ValueError(
                    f"groups must be one of {sorted(builders)} or a list of index tuples, got {groups!r}."
                )
            group_list = builders[groups]()
        else:
            group_list = normalize_groups(groups, n_features)
        config_groups = groups if isinstance(groups, str) else [list(g) for g in group_list]
        super().__init__(
            n_features=n_features,
            n_outputs=n_outputs,
            groups=config_groups,
            group_size=group_size,
            hidden=list(hidden),
            activation=activation,
        )
        self.input_shape = (n_features,)
        self.register_buffer("reference", check_reference(reference, (n_features,)))
        self.layer = ShapleyLayer(
            group_list, 1, n_outputs, hidden=hidden, activation=activation, n_features=n_features
        )

    def extra_repr(self) -> str:
        return (
            f"n_features={self.input_shape[0]}, n_outputs={self.n_outputs}, groups={self._config['groups']!r}"
        )

    def _explain(self, x: torch.Tensor, baseline: torch.Tensor | None, layers: bool) -> ShapleyExplanation:
        ref = self.reference.to(x) if baseline is None else baseline
        ref_fm = ref.T.unsqueeze(-1) if ref.dim() == 2 else ref.unsqueeze(-1)  # (F, B, 1) or (F, 1)
        delta = (x.T - (ref.T if ref.dim() == 2 else ref.unsqueeze(1))).unsqueeze(-1)  # (F, B, 1)
        if watched(self.layer):  # through __call__, so that forward hooks see (and may replace) the values
            values = self.layer(x.unsqueeze(-1), ref.unsqueeze(-1))  # (B, F, K)
            base = self.layer.forward_sum(delta, ref_fm)[1]  # (B or 1, K): the modules at the reference
        else:
            out = self.layer.forward_features(delta, ref_fm)
            values, base = out.values.transpose(0, 1), out.base  # (B, F, K), (B or 1, K)
        base = base.expand(x.shape[0], -1)
        predictions = base + values.sum(1)
        return ShapleyExplanation(
            values, base, predictions, self.input_shape, [values] if layers else None, None
        )

    def _predict(self, x: torch.Tensor) -> torch.Tensor:
        if watched(self.layer):
            return self._explain(x, None, False).predictions
        ref = self.reference.to(x)
        total, base = self.layer.forward_sum((x - ref).T.unsqueeze(-1), ref.unsqueeze(-1))
        return base + total

    def _check_baseline(self, baseline: object, x: torch.Tensor) -> torch.Tensor:
        base = _as_baseline(baseline, x)
        if base.dim() == 0:
            base = base.expand(x.shape[1])
        if tuple(base.shape) not in ((x.shape[1],), tuple(x.shape)) and tuple(base.shape) != (1, x.shape[1]):
            raise ValueError(
                f"baseline must have shape ({x.shape[1]},) or (B, {x.shape[1]}) = {tuple(x.shape)}, "
                f"got {tuple(base.shape)}."
            )
        if not bool(torch.isfinite(base).all()):
            raise ValueError("baseline must be finite, but it contains NaN or inf.")
        return base.squeeze(0) if base.dim() == 2 and base.shape[0] == 1 and x.shape[0] != 1 else base


class DeepShapNet(ShapNet):
    """Stacked Shapley layers with butterfly connectivity (DESIGN §4).

    ``Phi^(0) = x - r``; each layer ``l`` is a :class:`ShapleyLayer` on the previous representation
    (reference 0 after the first layer), with an optional residual; ``y = beta + sum_i Phi^(L)_i``.
    Local accuracy (``sum_i Phi^(L)_i = y(x) - y(r)``) and missingness hold exactly; the values are an
    approximation of the Shapley values of ``y`` (see :func:`shapnet.regularizers.shapley_consistency`).

    Args:
        n_features: ``F``; any ``F`` works, padded to ``k**L`` with features that stay at the reference.
        n_outputs: ``K``.
        channels: channels of every hidden stage (an int) or one entry per hidden stage (``depth - 1``).
        depth: number of layers; default ``L = ceil(log_k F)`` (one full butterfly).
        group_size: ``k`` (radix of the butterfly).
        hidden: hidden widths of each module's MLP.
        activation: inner activation.
        residual: add ``Phi^(l-1)`` to ``Phi^(l)`` where the channel counts match.
        reference: ``(F,)``; default zeros.
        prune: None, a fraction, a dict or a :class:`~shapnet.pruning.Pruning`.

    Shape:
        ``x``: ``(B, F)``; ``forward``: ``(B, K)``; ``explain(x).values``: ``(B, F, K)``.
    """

    def __init__(
        self,
        n_features: int,
        n_outputs: int,
        *,
        channels: int | Sequence[int] = 16,
        depth: int | None = None,
        group_size: int = 2,
        hidden: Sequence[int] = (64,),
        activation: str = "relu",
        residual: bool = True,
        reference: object = None,
        prune: float | dict | Pruning | None = None,
    ) -> None:
        check_positive_int(n_features, "n_features")
        check_positive_int(n_outputs, "n_outputs")
        group_size = check_int(group_size, "group_size", min_val=2, max_val=10)  # a butterfly of radix k
        hidden = _check_widths(hidden, "hidden")
        n_padded, n_stages = padded_size(n_features, group_size)
        depth = n_stages if depth is None else check_positive_int(depth, "depth")
        if not isinstance(channels, Sequence):
            channels = [check_positive_int(channels, "channels")] * (depth - 1)
        channels = _check_widths(channels, "channels")
        if len(channels) != depth - 1:
            raise ValueError(
                f"channels must be an int or a list with one entry per hidden stage (depth - 1 = {depth - 1}), "
                f"got {len(channels)} entries: {channels}."
            )
        pruning = as_pruning(prune)
        super().__init__(
            n_features=n_features,
            n_outputs=n_outputs,
            channels=channels,
            depth=depth,
            group_size=group_size,
            hidden=list(hidden),
            activation=activation,
            residual=residual,
            prune=None if pruning is None else pruning.to_dict(),
        )
        self.input_shape = (n_features,)
        self.n_padded, self.residual, self.pruning = n_padded, residual, pruning
        self.register_buffer("reference", check_reference(reference, (n_features,)))
        widths = [1, *channels, n_outputs]
        self.layers = nn.ModuleList(
            ShapleyLayer(
                butterfly_groups(n_padded, group_size, stage),
                widths[stage],
                widths[stage + 1],
                hidden=hidden,
                activation=activation,
                n_features=n_padded,
                bias=False,
            )
            for stage in range(depth)
        )
        self.bias = nn.Parameter(torch.zeros(n_outputs))

    def extra_repr(self) -> str:
        return (
            f"n_features={self.input_shape[0]}, n_padded={self.n_padded}, n_outputs={self.n_outputs}, "
            f"residual={self.residual}, prune={self.pruning}"
        )

    def _check_pruning(self, pruning: Pruning | None) -> None:
        pass  # every Pruning applies to a butterfly

    def _hidden(
        self, x: torch.Tensor, n_layers: int, collect: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None, list[torch.Tensor], list[float]]:
        """The first ``n_layers`` layers.

        Returns:
            the representation ``(F_pad, B, C)`` (feature-major), the first layer's reference (feature-major,
            for a model of one layer), the collected ``(B, F, C)`` representations, and the skipped fractions.
        """
        n_features = x.shape[1]
        ref = self.reference.to(x)
        pad = self.n_padded - n_features
        # Feature-major (F_pad, B, 1); padding features equal their reference (delta 0, reference 0).
        rep = torch.nn.functional.pad((x - ref).T, (0, 0, 0, pad)).unsqueeze(-1)
        ref_fm = torch.nn.functional.pad(ref, (0, pad)).unsqueeze(-1)
        all_layers = cast("Sequence[ShapleyLayer]", self.layers)  # a ModuleList types them as Module
        # A list: slicing the ModuleList itself would build a new Module on every call.
        layers = list(all_layers)[:n_layers]
        if (
            not collect
            and not torch.is_grad_enabled()
            and compiled.applies(rep)
            and not any(map(watched, layers))
        ):
            # Inference on the CPU: the loop below, with the residual and the pruning done in place.
            rep, skipped = compiled.deep_layers_in_place(
                all_layers,
                rep,
                ref_fm,
                residual=self.residual,
                pruning=self.pruning,
                n_real=n_features,
                n_run=n_layers,
            )
            return rep, ref_fm if n_layers == 0 else None, [], skipped
        collected, skipped = [], []
        pruning = self.pruning
        sparse = pruning is not None
        for index, layer in enumerate(layers):
            if watched(
                layer
            ):  # through __call__, batch-first, so that forward hooks see (and may replace) it
                inputs = rep.transpose(0, 1) if index > 0 else rep.transpose(0, 1) + ref_fm  # (B, F_pad, C)
                values = layer(inputs, ref_fm if index == 0 else None)  # (B, F_pad, C)
                out = LayerOutput(values.transpose(0, 1).contiguous(), values.new_zeros(()), 0.0)
            else:
                out = layer.forward_features(rep, ref_fm if index == 0 else None, sparse=sparse and index > 0)
            new = out.values
            if self.residual and new.shape[-1] == rep.shape[-1]:
                new = new + rep
            if pruning is not None and index < len(all_layers) - 1:  # sparse
                groups = all_layers[index + 1].groups if pruning.granularity == "group" else None
                new = prune_features(new, *pruning.for_layer(index), n_real=n_features, groups=groups)
            skipped.append(out.skipped)
            rep = new
            if collect:
                collected.append(rep[:n_features].transpose(0, 1))
        return rep, ref_fm if n_layers == 0 else None, collected, skipped

    def _predict(self, x: torch.Tensor) -> torch.Tensor:
        last = cast(ShapleyLayer, self.layers[-1])
        if watched(last):
            return self._explain(x, None, False).predictions
        # The last layer only has to deliver sum_i Phi_i, which efficiency gives without its values.
        rep, ref_fm, _, _ = self._hidden(x, len(self.layers) - 1, False)
        total, _ = last.forward_sum(rep, ref_fm)
        if self.residual and last.out_channels == rep.shape[-1]:
            total = total + rep.sum(0)
        return self.bias + total

    def _explain(self, x: torch.Tensor, baseline: torch.Tensor | None, layers: bool) -> ShapleyExplanation:
        rep, _, collected, skipped = self._hidden(x, len(self.layers), layers)
        values = rep[: x.shape[1]].transpose(0, 1)  # (B, F, K)
        base = self.bias.unsqueeze(0).expand(x.shape[0], -1).clone()
        predictions = base + values.sum(1)
        return ShapleyExplanation(
            values,
            base,
            predictions,
            self.input_shape,
            collected if layers else None,
            sum(skipped[1:]) / max(1, len(skipped) - 1) if self.pruning is not None else None,
            tuple(skipped) if self.pruning is not None else None,
        )


@dataclass(frozen=True)
class Stage:
    """One Shapley-convolution stage of a :class:`VisionShapNet`.

    Args:
        out_channels: channels produced from the transformed channels.
        kernel_size: window size, as in ``nn.Conv2d``.
        stride: window step, as in ``nn.Conv2d``.
        padding: zero padding, as in ``nn.Conv2d``.
        dilation: spacing of the window's pixels, as in ``nn.Conv2d``.
        hidden: hidden widths of the shared inner MLP.
        split: transform only the first ``split`` channels and pass the rest through (None: all).
    """

    out_channels: int
    kernel_size: int = 2
    stride: int = 1
    padding: int = 0
    dilation: int = 1
    hidden: tuple[int, ...] = (32,)
    split: int | None = None

    def __post_init__(self) -> None:
        check_positive_int(self.out_channels, "Stage.out_channels")
        check_int_pair(self.kernel_size, "Stage.kernel_size", min_val=1)
        check_int_pair(self.stride, "Stage.stride", min_val=1)
        check_int_pair(self.padding, "Stage.padding", min_val=0)
        check_int_pair(self.dilation, "Stage.dilation", min_val=1)
        _check_widths(self.hidden, "Stage.hidden")
        if self.split is not None:
            check_positive_int(self.split, "Stage.split")


#: Rules for a VisionShapNet's reference taken from the training images (:meth:`VisionShapNet.fit_reference`).
REFERENCE_RULES = ("mean", "min")

DEFAULT_STAGES = (
    Stage(16, kernel_size=2, dilation=1, hidden=(32,)),
    Stage(32, kernel_size=2, dilation=2, hidden=(64,)),
    Stage(32, kernel_size=2, dilation=4, hidden=(64,), split=16),
    Stage(32, kernel_size=2, dilation=8, hidden=(64,), split=32),
)


class VisionShapNet(ShapNet):
    """A deep ShapNet for images: stacked Shapley convolutions, then a per-pixel readout (DESIGN §5).

    Features are pixels. Each stage applies one shared Shapley module to every window and keeps the
    representation on the input grid, ``(B, C_l, H, W)``; with ``split`` a stage transforms only its first
    channels and passes the rest through (as in RealNVP/Glow). A final 1x1 Shapley stage maps to ``K``
    channels, and the logits are the sum over pixels plus a bias. Growing dilations widen the receptive
    field. The default stages (2x2 windows, dilations 1, 2, 4, 8) suit 28x28 grey images.

    Args:
        in_channels: ``C``.
        n_classes: ``K``.
        stages: the hidden :class:`Stage` s (dicts are accepted).
        image_size: ``(H, W)``; default ``(28, 28)``.
        readout_hidden: hidden widths of the final 1x1 stage.
        activation: inner activation.
        residual: add a stage's input to its output where the channel counts match.
        reference: what "absent" means: ``(C,)`` or ``(C, H, W)`` values (default zeros, which is the mean
            of standardised images), or a rule taken from the training images by :meth:`fit_reference`
            (which :func:`shapnet.training.fit` calls): ``"mean"`` (per channel) or ``"min"`` (per
            channel: the background of images on a black background, such as MNIST). The rule is kept in
            :attr:`config` and the values in the ``reference`` buffer, so both travel in checkpoints.
        prune: None, a fraction, a dict or a :class:`~shapnet.pruning.Pruning` (pixels per stage).

    Shape:
        ``x``: ``(B, C, H, W)``; ``forward``: ``(B, K)``; ``explain(x).values``: ``(B, H, W, K)``.
    """

    def __init__(
        self,
        in_channels: int,
        n_classes: int,
        *,
        stages: Sequence[Stage | dict] = DEFAULT_STAGES,
        image_size: int | tuple[int, int] = (28, 28),
        readout_hidden: Sequence[int] = (64,),
        activation: str = "relu",
        residual: bool = True,
        reference: object = None,
        prune: float | dict | Pruning | None = None,
    ) -> None:
        check_positive_int(in_channels, "in_channels")
        check_positive_int(n_classes, "n_classes")
        readout_hidden = _check_widths(readout_hidden, "readout_hidden")
        if isinstance(stages, (Stage, dict)) or not isinstance(stages, Sequence):
            raise TypeError(f"stages must be a sequence of Stage (or dicts), got {type(stages).__name__}.")
        stage_list = []
        for i, stage in enumerate(stages):
            if isinstance(stage, dict):
                stage = Stage(**stage)
            if not isinstance(stage, Stage):
                raise TypeError(
                    f"stages[{i}] must be a Stage or a dict of its fields, got {type(stage).__name__}."
                )
            stage_list.append(stage)
        size = check_int_pair(image_size, "image_size", min_val=1)
        pruning = as_pruning(prune)
        rule = reference if isinstance(reference, str) else None
        if rule is not None and rule not in REFERENCE_RULES:
            raise ValueError(
                "reference must be values (a number, a (C,) or (C, H, W) tensor) or one of "
                f"{REFERENCE_RULES}, got {reference!r}."
            )
        super().__init__(
            in_channels=in_channels,
            n_classes=n_classes,
            stages=[{**asdict(s), "hidden": list(s.hidden)} for s in stage_list],
            image_size=list(size),
            readout_hidden=list(readout_hidden),
            activation=activation,
            residual=residual,
            prune=None if pruning is None else pruning.to_dict(),
            **({} if rule is None else {"reference": rule}),
        )
        self._check_pruning(pruning)
        self.input_shape = (in_channels, *size)
        self.residual, self.pruning = residual, pruning
        self.register_buffer("reference", check_reference(None if rule else reference, self.input_shape))
        #: ``"mean"`` / ``"min"`` when the reference is taken from data, else None.
        self.reference_rule = rule
        self._reference_pending = rule is not None
        # Loaded weights carry the reference that the rule produced when the model was trained.
        self.register_load_state_dict_post_hook(_reference_loaded)
        convs, splits, channels = [], [], in_channels
        for number, stage in enumerate(stage_list):
            _check_stage_fits(stage, number, size, stages is DEFAULT_STAGES)
            split = channels if stage.split is None else stage.split
            if not 0 < split <= channels:
                raise ValueError(
                    f"stage split must be in [1, {channels}] (the channels so far), got {split}."
                )
            convs.append(
                ShapleyConv2d(
                    split,
                    stage.out_channels,
                    stage.kernel_size,
                    stride=stage.stride,
                    padding=stage.padding,
                    dilation=stage.dilation,
                    hidden=stage.hidden,
                    activation=activation,
                    bias=False,
                )
            )
            splits.append(split)
            channels = stage.out_channels + channels - split
        convs.append(
            ShapleyConv2d(channels, n_classes, 1, hidden=readout_hidden, activation=activation, bias=False)
        )
        splits.append(channels)
        self.stages = nn.ModuleList(convs)
        self.splits = splits
        self.bias = nn.Parameter(torch.zeros(n_classes))

    def extra_repr(self) -> str:
        rule = "" if self.reference_rule is None else f", reference={self.reference_rule!r}"
        return (
            f"input_shape={self.input_shape}, n_classes={self.n_outputs}, splits={self.splits}, "
            f"prune={self.pruning}{rule}"
        )

    @torch.no_grad()
    def fit_reference(self, X: object) -> VisionShapNet:
        """Set a rule reference (``"mean"`` / ``"min"`` per channel) from training images; returns self.

        A reference given as values is left alone. Args: ``X``: ``(N, C, H, W)`` array or tensor.
        """
        if self.reference_rule is None:
            return self
        x = torch.as_tensor(X)
        if x.dim() != 4 or tuple(x.shape[1:]) != self.input_shape or len(x) == 0:
            raise ValueError(
                "fit_reference needs training images of shape "
                f"(N, {', '.join(map(str, self.input_shape))}) with N >= 1, got {tuple(x.shape)}."
            )
        x = x.to(torch.float64)
        stat = x.mean((0, 2, 3)) if self.reference_rule == "mean" else x.amin((0, 2, 3))
        self.reference.copy_(stat.view(-1, 1, 1).expand(self.input_shape))
        self._reference_pending = False
        return self

    def _check_pruning(self, pruning: Pruning | None) -> None:
        if pruning is not None and pruning.granularity != "feature":
            raise ValueError(
                "VisionShapNet prunes single pixels (granularity='feature'); overlapping windows have no "
                f"group partition to prune, got granularity={pruning.granularity!r}."
            )

    def _explain(self, x: torch.Tensor, baseline: torch.Tensor | None, layers: bool) -> ShapleyExplanation:
        if self._reference_pending:
            raise ValueError(
                f"this VisionShapNet takes its reference from the training images (reference="
                f"{self.reference_rule!r}), but has not seen any: call model.fit_reference(X_train) or train "
                "it with shapnet.training.fit, or pass the reference as values."
            )
        ref = self.reference.to(x)
        rep = x - ref
        collected, skipped = [], []
        pruning = self.pruning
        sparse = pruning is not None
        n_pixels = x.shape[2] * x.shape[3]
        stages = cast("Sequence[ShapleyConv2d]", self.stages)  # a ModuleList types them as Module
        for index, (conv, split) in enumerate(zip(stages, self.splits)):
            first_ref = ref[:split] if index == 0 else None
            if watched(conv):  # through __call__, so that forward hooks see (and may replace) its output
                out = LayerOutput(conv(rep[:, :split], first_ref), rep.new_zeros(()), 0.0)
            else:
                out = conv.shapley(rep[:, :split], first_ref, sparse=sparse and index > 0)
            new = out.values
            if self.residual and new.shape[1] == split:
                new = new + rep[:, :split]
            if split < rep.shape[1]:
                new = torch.cat([new, rep[:, split:]], 1)
            if pruning is not None and index < len(stages) - 1:  # sparse
                b, c, h, w = new.shape
                pixels = new.permute(2, 3, 0, 1).reshape(n_pixels, b, c)  # (H*W, B, C)
                pixels = prune_features(pixels, *pruning.for_layer(index))
                new = pixels.view(h, w, b, c).permute(2, 3, 0, 1)
            skipped.append(out.skipped)
            rep = new
            if layers:
                collected.append(rep.permute(0, 2, 3, 1))
        values = rep.permute(0, 2, 3, 1)  # (B, H, W, K)
        base = self.bias.unsqueeze(0).expand(x.shape[0], -1).clone()
        predictions = base + values.sum((1, 2))
        return ShapleyExplanation(
            values,
            base,
            predictions,
            self.input_shape,
            collected if layers else None,
            sum(skipped[1:]) / max(1, len(skipped) - 1) if sparse else None,
            tuple(skipped) if sparse else None,
        )


def _check_stage_fits(stage: Stage, number: int, size: tuple[int, int], default: bool) -> None:
    """Raise if a stage's dilated window does not fit the (padded) image, which unfold would reject."""

    def pair(value: int | Sequence[int]) -> tuple[int, int]:
        return (value, value) if isinstance(value, int) else (value[0], value[1])

    spans = [d * (k - 1) + 1 for k, d in zip(pair(stage.kernel_size), pair(stage.dilation))]
    if all(span <= side + 2 * pad for span, side, pad in zip(spans, size, pair(stage.padding))):
        return
    span = "x".join(map(str, spans))
    hint = (
        "The default stages (dilations 1, 2, 4, 8) need images of at least 9x9; pass "
        "stages=[Stage(16), Stage(32, dilation=2)] (or fewer, smaller dilations) for small images."
        if default
        else "Use a smaller kernel_size or dilation, or more padding."
    )
    raise ValueError(
        f"stage {number} (kernel_size={stage.kernel_size}, dilation={stage.dilation}, padding={stage.padding}) "
        f"spans {span} pixels, which does not fit image_size {size[0]}x{size[1]}. {hint}"
    )


def _reference_loaded(module: nn.Module, incompatible_keys: object) -> None:
    """After ``load_state_dict``: the reference buffer holds the values the rule gave in training."""
    cast(VisionShapNet, module)._reference_pending = False  # registered on VisionShapNets only
