"""Grouped inner functions: the ``M`` Shapley modules of a layer, held as stacked weights.

A Shapley module (DESIGN §1) evaluates an inner MLP ``f: R^{k*C_in} -> R^{O}`` on all ``2**k`` coalitions
of its ``k`` input features and combines the results with the Shapley weights. ``GroupedMLP`` holds the
``M`` inner functions of a layer as stacked weights ``(M, ...)`` (or one shared function, ``M = 1``), and
:meth:`GroupedMLP.shapley` computes every module's Shapley values for every row in one call, dispatched to a
compute backend (:mod:`shapnet._backends`): compiled CPU kernels, fused PyTorch tiles, or plain PyTorch ops.
Three exact rewrites keep the work small (DESIGN §7):

1. First-layer split: ``W (x_S + r_rest) = sum_{j in S} W_j (x_j - r_j) + W r``, so only ``k`` projections
   ``P_j = W_j (x_j - r_j)`` are computed and every coalition's pre-activation is ``c0 + mask @ P``.
2. Linear last layer: ``v(S) = z(S) @ W_L + b_L`` is linear in the last hidden activation ``z``, and the
   Shapley weights of each player sum to zero, so ``phi = (Wᵀ z) @ W_L``: the last matmul runs on ``k``
   rows per module instead of ``2**k`` and its bias drops out.
3. Dummy players: a feature whose input equals its reference has ``phi = 0`` exactly; the result is masked
   with that indicator so missingness holds bit for bit, not just up to rounding.

A module whose inputs are all at the reference has Shapley values exactly 0; every backend skips such
(module, row) pairs when asked (``sparse=True``, dynamic pruning) and reports how many it skipped.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from ._backends import compiled, torch_plain, torch_tiles
from ._backends.checks import check_layer
from .coalitions import coalition_masks, shapley_weights
from .groups import GroupIndex

__all__ = ["ACTIVATIONS", "GroupedMLP", "ModuleShapley"]

ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "relu": F.relu,
    "gelu": F.gelu,
    "tanh": torch.tanh,
    "softplus": F.softplus,
    "silu": F.silu,
}


class ModuleShapley(NamedTuple):
    """Shapley values of every module of a layer.

    Attributes:
        values: ``(F, N, O)``: each feature's Shapley values summed over the modules that contain it.
        base: ``(M, N or 1, O)``: each module's output at the reference, ``f_m(r)``.
        skipped: fraction of the ``M * N`` module evaluations skipped because all inputs were at the
            reference (0.0 unless ``sparse``).
    """

    values: torch.Tensor
    base: torch.Tensor
    skipped: float


class GroupedMLP(nn.Module):
    """``M`` inner MLPs ``R^{k*C_in} -> R^{O}`` with stacked weights (or one shared MLP with ``M = 1``).

    Args:
        n_modules: ``M``; 1 for one function shared by every module (a convolution).
        group_size: ``k``, the features per module.
        in_channels: ``C_in`` per feature.
        out_channels: ``O``.
        hidden: widths of the hidden layers; ``()`` makes every module linear.
        activation: one of ``ACTIVATIONS``.
        readout_bias: give the last linear map a bias. It only shifts ``f_m(r)`` (the base), never the
            Shapley values, so deep ShapNets, which drop the bases, build their layers without it.
    """

    # Buffers, declared for the type checker (nn.Module.__getattr__ types them as Tensor | Module).
    masks_t: torch.Tensor  # (k, 2**k) float64: [j, S] is 1 when feature j is in coalition S
    weights_t: torch.Tensor  # (k, 2**k) float64: [j, S] is the Shapley weight of v(S) for feature j

    def __init__(
        self,
        n_modules: int,
        group_size: int,
        in_channels: int,
        out_channels: int,
        *,
        hidden: Sequence[int] = (64,),
        activation: str = "relu",
        readout_bias: bool = True,
    ) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}.")
        hidden = tuple(int(h) for h in hidden)
        if any(h < 1 for h in hidden):
            raise ValueError(f"hidden widths must be positive ints, got {hidden}.")
        if not 1 <= group_size <= 10:
            raise ValueError(
                f"group_size must be in [1, 10] (a module evaluates 2**k coalitions), got {group_size}."
            )
        self.n_modules, self.group_size = n_modules, group_size
        self.in_channels, self.out_channels = in_channels, out_channels
        self.hidden, self.activation = hidden, activation
        widths = [*hidden, out_channels]
        # (k, M, C_in, h0): the first linear map split per input feature (DESIGN §7).
        self.first_weight = nn.Parameter(torch.empty(group_size, n_modules, in_channels, widths[0]))
        has_first_bias = bool(hidden) or readout_bias
        self.first_bias = nn.Parameter(torch.empty(n_modules, widths[0])) if has_first_bias else None
        self.weights = nn.ParameterList(
            nn.Parameter(torch.empty(n_modules, w_in, w_out)) for w_in, w_out in itertools.pairwise(widths)
        )
        # Biases of the hidden layers after the first; the readout's bias is separate (optional).
        self.biases = nn.ParameterList(nn.Parameter(torch.empty(n_modules, w)) for w in widths[1:-1])
        self.out_bias = (
            nn.Parameter(torch.empty(n_modules, out_channels)) if hidden and readout_bias else None
        )
        self.reset_parameters()
        k = group_size
        # Shapley weights such as 1/12 are not exact in float32: float64 masters, cast at use.
        self.register_buffer("masks_t", coalition_masks(k, torch.float64).T.contiguous(), persistent=False)
        self.register_buffer("weights_t", shapley_weights(k, torch.float64).T.contiguous(), persistent=False)

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """``nn.Linear``'s default initialisation, per module: ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``."""
        bound = 1.0 / math.sqrt(self.group_size * self.in_channels)
        self.first_weight.uniform_(-bound, bound)
        if self.first_bias is not None:
            self.first_bias.uniform_(-bound, bound)
        for index, weight in enumerate(self.weights):
            b = 1.0 / math.sqrt(weight.shape[1])
            weight.uniform_(-b, b)
            if index < len(self.biases):
                self.biases[index].uniform_(-b, b)
        if self.out_bias is not None:
            self.out_bias.uniform_(
                -1.0 / math.sqrt(self.weights[-1].shape[1]), 1.0 / math.sqrt(self.weights[-1].shape[1])
            )

    def extra_repr(self) -> str:
        return (
            f"n_modules={self.n_modules}, group_size={self.group_size}, in_channels={self.in_channels}, "
            f"out_channels={self.out_channels}, hidden={self.hidden}, activation={self.activation!r}"
        )

    def offset(self, reference: torch.Tensor | None) -> torch.Tensor:
        """The first layer's pre-activation at the reference, ``c0 = b + sum_j W_j r_j``.

        Args:
            reference: ``(k, M, C_in)``, per-row ``(k, M, N, C_in)``, or None (zero).

        Returns:
            ``(M, 1, h0)`` or ``(M, N, h0)``.
        """
        if self.first_bias is None:
            bias = self.first_weight.new_zeros(self.first_weight.shape[1], 1, self.first_weight.shape[-1])
        else:
            bias = self.first_bias.unsqueeze(1)
        if reference is None:
            return bias
        if reference.dim() == 3:
            reference = reference.unsqueeze(2)
        weight = self.first_weight.expand(-1, reference.shape[1], -1, -1)
        return bias + torch.einsum("kmnc,kmch->mnh", reference, weight)

    def hidden_tail(self, a: torch.Tensor) -> torch.Tensor:
        """Activations ``(M, X, h0)`` through the hidden layers after the first: ``(M, X, h_last)``."""
        act = self.act
        # There is one bias fewer than weights, so zip stops before the readout. (Slicing the ParameterList
        # instead would build a new Module on every call.)
        for w, b in zip(self.weights, self.biases):
            a = act(torch_plain.matmul(a, w) + b.unsqueeze(1))
        return a

    def _readout(self, pre: torch.Tensor) -> torch.Tensor:
        """The inner MLP after its first linear map: pre-activations ``(M, X, h0)`` -> ``(M, X, O)``."""
        if not self.hidden:  # a linear module: the first map is the readout, and ``pre`` holds its bias
            return pre
        out = torch_plain.matmul(self.hidden_tail(self.act(pre)), self.weights[-1])
        return out if self.out_bias is None else out + self.out_bias.unsqueeze(1)

    def base(self, offset: torch.Tensor) -> torch.Tensor:
        """Every module's output at the reference, ``f_m(r)``: ``(M, 1 or N, O)``."""
        return self._readout(offset)

    def outputs(self, delta: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
        """Every module's output at the input, ``f_m(x_{G_m})``: ``(k, M, N, C_in) -> (M, N, O)``.

        One coalition (the full one) instead of ``2**k``: by efficiency, ``sum_j phi_j = f_m(x) - f_m(r)``,
        which is all that a prediction needs.
        """
        m = delta.shape[1]
        weight = (
            self.first_weight if self.first_weight.shape[1] == m else self.first_weight.expand(-1, m, -1, -1)
        )
        return self._readout(offset + torch.einsum("kmnc,kmch->mnh", delta, weight))

    def shapley(
        self, delta: torch.Tensor, offset: torch.Tensor, index: GroupIndex, *, sparse: bool = False
    ) -> ModuleShapley:
        """Shapley values of every module for every row, on the backend that fits the input.

        One-hidden-layer ReLU modules run as compiled kernels on float32/float64 CPU tensors and as fused
        PyTorch tiles elsewhere; other inner functions as plain PyTorch ops (:mod:`shapnet._backends`).

        Args:
            delta: ``(F, N, C_in)``, feature-major: each feature's input minus its reference.
            offset: ``(M or 1, 1 or N, h0)`` from :meth:`offset`.
            index: where each module's features sit in ``delta``: a layer's
                :class:`~shapnet.groups.GroupIndex`.
            sparse: report the fraction of (module, row) pairs skipped because all their inputs are at the
                reference (their values are exactly 0). The compiled and fused backends skip them always;
                the plain one packs the busy rows only when asked.

        Returns:
            :class:`ModuleShapley` with ``values (F, N, O)``.
        """
        if delta.dim() != 3 or delta.shape[0] != index.n_features:
            raise ValueError(
                f"delta must have shape (F, N, C_in) with F = {index.n_features} features (the groups' "
                f"index), got shape {tuple(delta.shape)}."
            )
        n_rows = delta.shape[1]
        if self.fused_relu and compiled.applies(delta):  # checks its input itself
            values, n_busy = compiled.feature_values(self, delta, index.slots, offset)
        else:
            check_layer(
                delta, index.slots, self.first_weight, offset, self.weights[-1] if self.fused_relu else None
            )
            tiles = index.gather(delta)  # (k, M, N, C_in)
            active = tiles.abs().sum(-1) != 0  # a sum of |.| is 0 iff all are; ~4x faster than ne().any()
            backend = torch_tiles if self.fused_relu else torch_plain
            tile_values, n_busy = backend.values(self, tiles, offset, active, sparse)
            values = index.scatter(tile_values)
        pairs = index.slots.shape[1] * n_rows
        skipped = 1.0 - n_busy / pairs if sparse and pairs else 0.0
        return ModuleShapley(values, self.base(offset), skipped)

    @property
    def fused_relu(self) -> bool:
        """One hidden ReLU layer: the fused backends (compiled kernels, PyTorch tiles) apply."""
        return self.activation == "relu" and len(self.hidden) == 1

    @property
    def act(self) -> Callable[[torch.Tensor], torch.Tensor]:
        """The inner activation function."""
        return ACTIVATIONS[self.activation]
