"""HarsanyiNet (Chen et al., ICML 2023): networks whose units are Harsanyi interactions.

Each hidden unit ``d`` of a Harsanyi layer chooses a set of children among the previous layer's units
(``tau > 0``, trained with a straight-through estimator) and fires only when all of them are active:

    z_d(x) = ReLU(w_d . (c_d * z_prev(x))) * prod_{j in children(d)} tanh(gamma * |z_prev,j(x)|)

The unit's *receptive field* ``R_d`` is the set of input features below it. With the input measured from
the reference (``z_0 = x - r``), a feature at its reference is exactly 0, so every unit whose receptive field
holds an absent feature is exactly 0, and every other unit keeps its value. Each unit's contribution to an
output, ``v_kd z_d(x)``, is therefore a Harsanyi dividend of the coalition ``R_d``, and the Shapley value
of feature ``i`` is the sum of the dividends of the units that contain it, each shared equally among its
``|R_d|`` features:

    phi_ik(x) = sum_l sum_d  v_kd z_d(x) [i in R_d] / |R_d|

exact for any number of features, in one forward pass. As in a Deep ShapNet, the reference is part of the
model (the unanimity structure holds only around it), so explanations are against the reference only.

:class:`HarsanyiNet` is the MLP variant for tables; :class:`VisionHarsanyiNet` the convolutional variant,
whose units sit on the pixel grid and choose their children in the 3x3 neighbourhood below.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from ._validation import check_positive_int, check_reference
from .explanation import ShapleyExplanation
from .models import ShapNet

__all__ = ["HarsanyiNet", "VisionHarsanyiNet"]


class _ChildSelect(torch.autograd.Function):
    """``1[tau > 0]`` forward; the derivative of ``sigmoid(slope * tau)`` backward (a straight-through
    estimator, as in the paper), so that children can be chosen by gradient descent."""

    @staticmethod
    def forward(ctx, tau: torch.Tensor, slope: float) -> torch.Tensor:
        ctx.save_for_backward(tau)
        ctx.slope = slope
        return (tau > 0).to(tau.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (tau,) = ctx.saved_tensors
        s = torch.sigmoid(ctx.slope * tau)
        return grad * ctx.slope * s * (1 - s), None


def _initial_tau(n_units: int, n_inputs: int, n_children: int, scale: float) -> torch.Tensor:
    """``(n_units, n_inputs)``: ``+scale`` on ``n_children`` random inputs per unit, ``-scale`` elsewhere."""
    chosen = torch.rand(n_units, n_inputs).argsort(dim=1)[:, :n_children]
    tau = torch.full((n_units, n_inputs), -scale)
    return tau.scatter_(1, chosen, scale)


def _gate(strength: torch.Tensor, children: torch.Tensor) -> torch.Tensor:
    """AND of the children: ``prod_j tanh(gamma |z_j|)`` over the chosen ``j``, exactly 0 if one is 0.

    Args:
        strength: ``(B, J)``: ``tanh(gamma |z_j|)`` of the candidate children.
        children: ``(U, J)`` in {0, 1}.
    """
    # A non-child contributes a factor 1; written arithmetically so that the children get a gradient.
    return (strength.unsqueeze(1) * children + (1 - children)).prod(-1)  # (B, U)


def _shares(fields: torch.Tensor) -> torch.Tensor:
    """``(U, F)``: each unit's receptive field divided by its size (rows of empty fields stay 0)."""
    return fields / fields.sum(1, keepdim=True).clamp_min(1)


def _fields_of(model: HarsanyiNet | VisionHarsanyiNet) -> list[torch.Tensor]:
    """``model.receptive_fields()``, recomputed only when a unit's choice of children can have changed.

    The fields depend only on the signs of ``tau``; computing them costs as much as a third of an image
    explanation (``(P, P)`` per layer), and explaining does not change them. The key is each ``tau``'s
    storage and version counter, which an optimiser step, ``load_state_dict`` or ``.to()`` changes.
    """
    key = tuple((tau.data_ptr(), tau._version) for tau in model.tau)
    cached = model.__dict__.get("_fields_cache")
    if cached is None or cached[0] != key:
        cached = (key, model.receptive_fields())
        model.__dict__["_fields_cache"] = cached  # a plain attribute: not state, not saved
    return cached[1]


def _check_gate(child_ratio: float, gamma: float, slope: float) -> None:
    """The children's initial share and the AND gate's settings, shared by both HarsanyiNets."""
    if not 0 < child_ratio <= 1:
        raise ValueError(f"child_ratio must be in (0, 1], got {child_ratio!r}.")
    if gamma <= 0 or slope <= 0:
        raise ValueError(f"gamma and slope must be positive, got gamma={gamma!r}, slope={slope!r}.")


class HarsanyiNet(ShapNet):
    """The MLP HarsanyiNet for tabular data: exact Shapley values in one forward pass.

    Args:
        n_features: ``F``.
        n_outputs: ``K``.
        hidden: units per Harsanyi layer (one layer per entry).
        child_ratio: fraction of the previous layer's units chosen as children at initialisation (the
            first layer gets at least one).
        gamma: sharpness of the AND gate ``tanh(gamma |z|)``.
        slope: slope of the straight-through estimator that trains the children.
        reference: ``(F,)``; default zeros. Values are exact against it (and only it).

    Shape:
        ``x``: ``(B, F)``; ``forward``: ``(B, K)``; ``explain(x).values``: ``(B, F, K)``.
    """

    def __init__(
        self,
        n_features: int,
        n_outputs: int,
        *,
        hidden: Sequence[int] = (100, 100),
        child_ratio: float = 0.1,
        gamma: float = 100.0,
        slope: float = 10.0,
        reference: object = None,
    ) -> None:
        check_positive_int(n_features, "n_features")
        check_positive_int(n_outputs, "n_outputs")
        hidden = tuple(int(h) for h in hidden)
        if not hidden:
            raise ValueError("hidden must name at least one Harsanyi layer, got an empty sequence.")
        for width in hidden:
            check_positive_int(width, "every entry of hidden")
        _check_gate(child_ratio, gamma, slope)
        super().__init__(
            n_features=n_features,
            n_outputs=n_outputs,
            hidden=list(hidden),
            child_ratio=child_ratio,
            gamma=gamma,
            slope=slope,
            reference=None,
        )
        self.input_shape = (n_features,)
        self.gamma, self.slope = float(gamma), float(slope)
        self.register_buffer("reference", check_reference(reference, (n_features,)))
        widths = (n_features, *hidden)
        self.weights = nn.ParameterList(
            nn.Parameter(nn.init.xavier_uniform_(torch.empty(out, inp))) for inp, out in zip(widths, hidden)
        )
        self.tau = nn.ParameterList(
            nn.Parameter(_initial_tau(out, inp, max(1, int(child_ratio * inp)), 1.0))
            for inp, out in zip(widths, hidden)
        )
        self.readout = nn.ParameterList(
            nn.Parameter(nn.init.xavier_uniform_(torch.empty(n_outputs, width))) for width in hidden
        )
        self.bias = nn.Parameter(torch.zeros(n_outputs))

    def extra_repr(self) -> str:
        return (
            f"n_features={self.input_shape[0]}, n_outputs={self.n_outputs}, "
            f"hidden={self.config['hidden']}, gamma={self.gamma}"
        )

    def receptive_fields(self) -> list[torch.Tensor]:
        """Per layer, ``(H_l, F)`` booleans: the input features below each unit."""
        fields, below = [], None
        for tau in self.tau:
            children = (tau > 0).to(torch.float32)
            below = children if below is None else children @ below
            below = below > 0
            fields.append(below)
            below = below.to(torch.float32)
        return fields

    def _explain(self, x: torch.Tensor, baseline: torch.Tensor | None, layers: bool) -> ShapleyExplanation:
        z = x - self.reference.to(x)  # (B, F): exactly 0 where a feature is at its reference
        values = x.new_zeros(x.shape[0], x.shape[1], self.n_outputs)  # (B, F, K)
        predictions = self.bias.to(x).expand(x.shape[0], -1)
        fields = _fields_of(self)
        layer_values = []
        for weight, tau, readout, field in zip(self.weights, self.tau, self.readout, fields):
            children = _ChildSelect.apply(tau, self.slope)  # (H, J)
            gate = _gate(torch.tanh(self.gamma * z.abs()), children)  # (B, H)
            z = F.relu(z @ (weight * children).T) * gate  # (B, H)
            dividends = z.unsqueeze(-1) * readout.T  # (B, H, K): each unit's Harsanyi dividend
            contribution = torch.einsum("bhk,hf->bfk", dividends, _shares(field.to(x)))
            values = values + contribution
            predictions = predictions + dividends.sum(1)
            if layers:
                layer_values.append(contribution)
        base = self.bias.to(x).expand(x.shape[0], -1)
        return ShapleyExplanation(values, base, predictions, self.input_shape, layer_values or None)


class VisionHarsanyiNet(ShapNet):
    """The convolutional HarsanyiNet: units on the pixel grid, each choosing its children in the 3x3
    neighbourhood of the layer below; exact per-pixel Shapley values in one forward pass.

    A 1x1 convolution without bias embeds ``x - reference`` into ``channels`` per pixel (so a pixel at the
    reference is exactly 0); each Harsanyi layer is a 3x3 convolution over the chosen children, gated by
    their AND; a linear readout per layer maps every unit (position, all channels) to the outputs.

    Args:
        in_channels: ``C``.
        n_outputs: ``K``.
        image_size: ``(H, W)`` (an int for square images).
        channels: channels of every layer.
        n_layers: Harsanyi layers.
        child_ratio: fraction of the 3x3 neighbours chosen as children at initialisation (at least one).
        gamma, slope: as in :class:`HarsanyiNet`.
        reference: ``(C,)`` per channel or ``(C, H, W)``; default zeros.

    Shape:
        ``x``: ``(B, C, H, W)``; ``forward``: ``(B, K)``; ``explain(x).values``: ``(B, H, W, K)``.
    """

    valid: torch.Tensor  # (9, P): neighbour j of position p lies inside the image
    neighbour: torch.Tensor  # (9, P): its flat index

    def __init__(
        self,
        in_channels: int,
        n_outputs: int,
        *,
        image_size: int | Sequence[int] = (28, 28),
        channels: int = 16,
        n_layers: int = 2,
        child_ratio: float = 0.5,
        gamma: float = 1.0,
        slope: float = 10.0,
        reference: object = None,
    ) -> None:
        check_positive_int(in_channels, "in_channels")
        check_positive_int(n_outputs, "n_outputs")
        check_positive_int(channels, "channels")
        check_positive_int(n_layers, "n_layers")
        size = (image_size, image_size) if isinstance(image_size, int) else tuple(int(s) for s in image_size)
        if len(size) != 2 or min(size) < 1:
            raise ValueError(f"image_size must be a positive int or (H, W), got {image_size!r}.")
        _check_gate(child_ratio, gamma, slope)
        super().__init__(
            in_channels=in_channels,
            n_outputs=n_outputs,
            image_size=list(size),
            channels=channels,
            n_layers=n_layers,
            child_ratio=child_ratio,
            gamma=gamma,
            slope=slope,
            reference=None,
        )
        height, width = size
        self.input_shape = (in_channels, height, width)
        self.gamma, self.slope = float(gamma), float(slope)
        ref = torch.as_tensor(0.0 if reference is None else reference, dtype=torch.float32)
        if ref.dim() == 1:
            ref = ref.reshape(-1, 1, 1)
        self.register_buffer(
            "reference", check_reference(torch.broadcast_to(ref, self.input_shape).clone(), self.input_shape)
        )
        self.embed = nn.Conv2d(in_channels, channels, 1, bias=False)
        self.convs = nn.ParameterList(
            nn.Parameter(nn.init.kaiming_normal_(torch.empty(channels, channels * 9), nonlinearity="relu"))
            for _ in range(n_layers)
        )
        n_pos = height * width
        # valid[j, p]: neighbour j (of the 3x3 window) of position p lies inside the image.
        valid = F.unfold(torch.ones(1, 1, height, width), 3, padding=1)[0]  # (9, P)
        self.register_buffer("valid", valid)
        # neighbour[j, p]: the flat index of neighbour j of position p (p itself where it is padding).
        index = torch.arange(n_pos, dtype=torch.float32).reshape(1, 1, height, width) + 1
        neighbour = F.unfold(index, 3, padding=1)[0].long() - 1  # (9, P), -1 on padding
        self.register_buffer("neighbour", torch.where(neighbour < 0, torch.arange(n_pos), neighbour))
        n_children = max(1, round(child_ratio * 9))
        self.tau = nn.ParameterList(
            nn.Parameter(_initial_tau(n_pos, 9, n_children, 1.0).T.contiguous()) for _ in range(n_layers)
        )  # each (9, P)
        self.readout = nn.ParameterList(
            nn.Parameter(torch.randn(n_outputs, channels, n_pos) * 0.01) for _ in range(n_layers)
        )
        self.bias = nn.Parameter(torch.zeros(n_outputs))

    def extra_repr(self) -> str:
        return (
            f"in_channels={self.input_shape[0]}, n_outputs={self.n_outputs}, "
            f"image_size={tuple(self.input_shape[1:])}, n_layers={len(self.convs)}"
        )

    def _children(self, tau: torch.Tensor) -> torch.Tensor:
        """``(9, P)`` in {0, 1}: chosen neighbours that lie inside the image."""
        return _ChildSelect.apply(tau, self.slope) * self.valid

    def receptive_fields(self) -> list[torch.Tensor]:
        """Per layer, ``(P, P)`` booleans: row ``p`` marks the pixels below the unit at position ``p``."""
        n_pos = self.neighbour.shape[1]
        below = torch.eye(n_pos, dtype=torch.bool, device=self.valid.device)
        fields = []
        for tau in self.tau:
            chosen = ((tau > 0) & self.valid.bool()).T  # (P, 9)
            below = (below[self.neighbour.T] & chosen.unsqueeze(-1)).any(1)  # (P, P)
            fields.append(below)
        return fields

    def _explain(self, x: torch.Tensor, baseline: torch.Tensor | None, layers: bool) -> ShapleyExplanation:
        batch, _, height, width = x.shape
        z = self.embed(x - self.reference.to(x))  # (B, C, H, W): exactly 0 at pixels at the reference
        values = x.new_zeros(batch, height * width, self.n_outputs)  # (B, P, K)
        predictions = self.bias.to(x).expand(batch, -1)
        layer_values = []
        for conv, tau, readout, field in zip(self.convs, self.tau, self.readout, _fields_of(self)):
            children = self._children(tau)  # (9, P)
            patches = F.unfold(z, 3, padding=1).unflatten(1, (-1, 9)) * children  # (B, C, 9, P)
            strength = torch.tanh(self.gamma * z.abs().sum(1, keepdim=True))  # (B, 1, H, W)
            neighbours = F.unfold(strength, 3, padding=1)  # (B, 9, P)
            gate = (neighbours * children + (1 - children)).prod(1)  # (B, P): AND of the chosen children
            pre = torch.einsum("om,bmp->bop", conv, patches.flatten(1, 2))  # (B, C, P)
            z = (F.relu(pre) * gate.unsqueeze(1)).reshape(batch, -1, height, width)
            dividends = torch.einsum("bcp,kcp->bpk", z.flatten(2), readout)  # (B, P, K) per unit
            contribution = torch.einsum("bqk,qp->bpk", dividends, _shares(field.to(x)))
            values = values + contribution
            predictions = predictions + dividends.sum(1)
            if layers:
                layer_values.append(contribution.reshape(batch, height, width, -1))
        base = self.bias.to(x).expand(batch, -1)
        return ShapleyExplanation(
            values.reshape(batch, height, width, -1),
            base,
            predictions,
            self.input_shape,
            layer_values or None,
        )
