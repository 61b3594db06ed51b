"""Grouped inner functions and the Shapley computation of a whole layer of modules at once.

A Shapley module (DESIGN §1) evaluates an inner MLP ``f: R^{k*C_in} -> R^{O}`` on all ``2**k`` coalitions
of its ``k`` input features and combines the results with the Shapley weights. ``GroupedMLP`` holds the
``M`` inner functions of a layer as stacked weights ``(M, ...)`` (or one shared function, ``M = 1``), and
``GroupedMLP.shapley`` computes every module's Shapley values in a handful of batched matmuls, with no
Python loop over modules or samples. Three exact rewrites keep the work small (DESIGN §7):

1. First-layer split: ``W (x_S + r_rest) = sum_{j in S} W_j (x_j - r_j) + W r``, so only ``k`` projections
   ``P_j = W_j (x_j - r_j)`` are computed and every coalition's pre-activation is ``c0 + mask @ P``.
2. Linear last layer: ``v(S) = z(S) @ W_L + b_L`` is linear in the last hidden activation ``z``, and the
   Shapley weights of each player sum to zero, so ``phi = (Wᵀ z) @ W_L``: the last matmul runs on ``k``
   rows per module instead of ``2**k`` and its bias drops out.
3. Dummy players: a feature whose input equals its reference has ``phi = 0`` exactly; the result is masked
   with that indicator so missingness holds bit for bit, not just up to rounding.

Tensors are *coalition-major*: inputs ``(k, M, N, C)``, pre-activations ``(2**k, M, N, h)``, so that
building all coalitions is ``k`` contiguous additions (coalition ``S + 2**j`` = coalition ``S`` plus
``P_j``) and the coalition sums are single 2-D matmuls. For one-hidden-layer ReLU modules (the default) a
custom autograd function runs projection, coalitions, ReLU, mix and readout tile by tile in cache, and its
backward pass recomputes them: no ``h``-wide tensor is ever written to main memory or kept for backward.
On CPU tensors the same function runs as compiled kernels (:mod:`shapnet.kernels`, one call per layer,
idle rows skipped); the PyTorch tiles serve every other device.

With ``sparse=True`` (dynamic pruning), a module whose inputs are all at the reference is skipped for that
sample: its Shapley values are exactly 0. The values equal the dense ones.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import kernels
from .coalitions import coalition_masks, shapley_weights

__all__ = ["GroupedMLP", "ModuleShapley", "ACTIVATIONS"]

ACTIVATIONS = {
    "relu": F.relu,
    "gelu": F.gelu,
    "tanh": torch.tanh,
    "softplus": F.softplus,
    "silu": F.silu,
}


class ModuleShapley(NamedTuple):
    """Shapley values of every module of a layer.

    Attributes:
        values: ``(k, M, N, O)``; ``values[j, m, n]`` is the Shapley value of module ``m``'s ``j``-th
            feature for row ``n``.
        base: ``(M, N or 1, O)``: each module's output at the reference, ``f_m(r)``.
        skipped: fraction of the ``M * N`` module evaluations skipped because all inputs were at the
            reference (0.0 on the dense path).
    """

    values: torch.Tensor
    base: torch.Tensor
    skipped: float


def _matmul(a: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """``(..., M, X, h) @ (M or 1, h, h')``; a shared weight (M = 1) runs as one large 2-D matmul."""
    if w.shape[0] == 1:
        return (a.reshape(-1, a.shape[-1]) @ w[0]).view(*a.shape[:-1], w.shape[-1])
    if a.dim() == 3:
        return torch.bmm(a, w)
    return torch.matmul(a, w)


# Cache blocking (DESIGN §7): a layer's modules are processed in tiles whose h-wide intermediates (the k
# projections, the 2**k coalition activations, the k mixed rows) take about this many bytes, so that they
# stay in cache; only the C_in-wide inputs and O-wide outputs travel through main memory.
_BLOCK_BYTES = 1 << 21


def _tiles(
    m: int, n: int, h: int, rows: int, itemsize: int, extents: Sequence[int] | None = None
) -> list[tuple[slice, slice]]:
    """(module, row) tiles of an ``(M, N)`` grid, each holding about ``_BLOCK_BYTES`` of ``rows`` h-wide rows.

    A tile is several whole modules, or a run of rows of one module, so that its columns of a ``(k, M*N*h)``
    matrix form one strided 2-D view and a per-module offset only needs broadcasting. With ``extents`` (the
    number of leading rows of each module that need computing; pruning lists a module's busy rows first) a
    tile stops at the largest extent of its modules, and tiles with nothing to compute are left out.
    """
    per_row = max(1, rows * h * itemsize)
    n_rows = max(1, -(-1024 // h), _BLOCK_BYTES // per_row)
    ext = [n] * m if extents is None else [min(int(e), n) for e in extents]
    longest = max(ext, default=0)
    if longest == 0:
        return []
    if n_rows >= longest:
        step = n_rows // longest
        tiles = [(slice(m0, min(m0 + step, m)), max(ext[m0 : m0 + step])) for m0 in range(0, m, step)]
        return [(mods, slice(0, extent)) for mods, extent in tiles if extent > 0]
    return [
        (slice(m0, m0 + 1), slice(n0, min(n0 + n_rows, ext[m0]))) for m0 in range(m) for n0 in range(0, ext[m0], n_rows)
    ]


def _pick(t: torch.Tensor, dim: int, index: slice) -> torch.Tensor:
    """``t`` sliced along ``dim``, unless that dimension is broadcast (size 1)."""
    return t if t.shape[dim] == 1 else t.narrow(dim, index.start, index.stop - index.start)


def _tile_size(tiles: list[tuple[slice, slice]]) -> int:
    """The most (module, row) pairs in one tile."""
    return max((t[0].stop - t[0].start) * (t[1].stop - t[1].start) for t in tiles)


class _Rows:
    """Which rows of the ``(M, N)`` grid a tile covers, and how to read and write them.

    Dense: tile ``(mods, r)`` is the slice ``[mods, r]`` of the grid. Sparse (pruning): the grid is
    ``(M, R)`` and ``index[m, r]`` names a row of module ``m``: tiles gather their rows in cache, so no
    packed copy of the inputs or outputs ever goes through main memory.
    """

    def __init__(self, m: int, n: int, index: torch.Tensor | None) -> None:
        self.m, self.n = m, n
        self.flat = None if index is None else (index + torch.arange(m, device=index.device).unsqueeze(1) * n)

    @property
    def width(self) -> int:
        return self.n if self.flat is None else self.flat.shape[1]

    def where(self, mods: slice, r: slice) -> torch.Tensor | None:
        """The tile's flat ``M*N`` row indices, ``(mb*nb,)``, or None for a dense slice."""
        return None if self.flat is None else self.flat[mods, r].reshape(-1)

    def take(self, t: torch.Tensor, mods: slice, r: slice, where: torch.Tensor | None) -> torch.Tensor:
        """``t (A, M, N, ...)`` at the tile: ``(A, mb, nb, ...)``."""
        if where is None:
            return t[:, mods, r]
        rest = t.shape[3:]
        picked = t.reshape(t.shape[0], self.m * self.n, *rest).index_select(1, where)
        return picked.view(t.shape[0], mods.stop - mods.start, -1, *rest)

    def put(self, total: torch.Tensor, mods: slice, r: slice, where: torch.Tensor | None, value: torch.Tensor) -> None:
        """Write ``value (A, mb, nb, ...)`` into ``total (A, M, N, ...)`` at the tile."""
        if where is None:
            total[:, mods, r] = value
        else:
            rest = total.shape[3:]
            flat = total.view(total.shape[0], self.m * self.n, *rest)
            flat.index_copy_(1, where, value.reshape(total.shape[0], -1, *rest))

    def offset(self, offset: torch.Tensor, mods: slice, r: slice, where: torch.Tensor | None) -> torch.Tensor:
        """``offset (M or 1, N or 1, h)`` at the tile, broadcastable to ``(mb, nb, h)``."""
        if offset.shape[1] == 1 or where is None:
            return _pick(_pick(offset, 0, mods), 1, r)
        return self.take(offset.unsqueeze(0), mods, r, where)[0]  # per-row offsets: (M, N, h) here

    def add_offset(self, total: torch.Tensor, mods: slice, r: slice, where: torch.Tensor | None, grad: torch.Tensor) -> None:
        """Add an ``(mb, nb, h)`` tile gradient to the offset's gradient ``total``."""
        if total.shape[1] == 1 or where is None:
            _accumulate_offset(total, mods, r, grad)
        else:
            total.view(self.m * self.n, -1).index_add_(0, where, grad.reshape(-1, grad.shape[-1]))


class _ReluModules(torch.autograd.Function):
    """Shapley values of one-hidden-layer ReLU modules, fused per cache tile (DESIGN §7).

    ``phi = (W^T relu(c0 + mask @ P)) @ W_L`` with ``P_j = delta_j @ W1_j``, then zeroed where a feature is
    inactive (``delta_j = 0``, a dummy player): projection, the ``2**k`` coalitions, ReLU, Shapley mix,
    readout and masking run tile by tile, and the backward pass recomputes them instead of storing any
    h-wide tensor.

    Inputs: ``delta (k, M, N, C)``, ``first_weight (k, M or 1, C, h)``, ``offset (M or 1, N or 1, h)``
    (per-row offsets need ``M`` rows when ``rows`` is given), ``out_weight (M or 1, h, O)``,
    ``active (k, M, N)`` bool, ``weights_t (k, 2**k)``, ``masks_t (k, 2**k)``; for pruning, ``rows``
    ``(M, R)`` (each module's rows to compute, busy ones first) and ``extents`` (how many of them are
    busy; the others, and every row not in ``rows``, are idle and get 0). Output: ``(k, M, N, O)``.
    """

    @staticmethod
    def _tile_forward(d, w1, offset, buf):
        """``(proj (k, mb, nb, h), pre (2**k, mb*nb*h))`` of one tile; ``pre`` (before ReLU) lives in ``buf``.

        ``d (k, mb, nb, C)``, ``w1 (k, mb or 1, C, h)``, ``offset`` broadcastable to ``(mb, nb, h)``.
        """
        proj = d * w1 if d.shape[-1] == 1 else torch.matmul(d, w1)  # (k, mb, nb, h); C = 1 is an outer product
        k, mb, nb, h = proj.shape
        pre = buf[:, : mb * nb * h]
        pre[0].view(mb, nb, h).copy_(offset.expand(mb, nb, h))
        flat = proj.reshape(k, -1)
        for j in range(k):  # coalition S + 2**j is coalition S plus P_j: k contiguous writes
            torch.add(pre[: 2**j], flat[j], out=pre[2**j : 2 ** (j + 1)])
        return proj, pre

    @staticmethod
    def forward(ctx, delta, first_weight, offset, out_weight, active, weights_t, masks_t, rows, extents):  # type: ignore[override]
        k, m, n, _ = delta.shape
        h, o = first_weight.shape[-1], out_weight.shape[-1]
        grid = _Rows(m, n, rows)
        tiles = _tiles(m, grid.width, h, 2**k + 2 * k, delta.element_size(), extents)
        out = delta.new_empty(k, m, n, o) if rows is None else delta.new_zeros(k, m, n, o)
        ctx.save_for_backward(delta, first_weight, offset, out_weight, active, weights_t, masks_t)
        ctx.grid, ctx.tiles = grid, tiles
        if not tiles:
            return out
        width = _tile_size(tiles) * h
        buf, mix_buf = delta.new_empty(2**k, width), delta.new_empty(k, width)
        for mods, r in tiles:
            where = grid.where(mods, r)
            d = grid.take(delta, mods, r, where)
            proj, pre = _ReluModules._tile_forward(
                d, _pick(first_weight, 1, mods), grid.offset(offset, mods, r, where), buf
            )
            mixed = torch.mm(weights_t, pre.relu_(), out=mix_buf[:, : pre.shape[1]]).view(proj.shape)
            phi = torch.matmul(mixed, _pick(out_weight, 0, mods))  # (k, mb, nb, O)
            phi.mul_(grid.take(active, mods, r, where).unsqueeze(-1))
            grid.put(out, mods, r, where, phi)
        return out

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        delta, first_weight, offset, out_weight, active, weights_t, masks_t = ctx.saved_tensors
        need_delta, need_first, need_offset, need_out = ctx.needs_input_grad[:4]
        grid, tiles = ctx.grid, ctx.tiles
        k = delta.shape[0]
        h = first_weight.shape[-1]
        grad_delta = None
        if need_delta:  # rows outside every tile (idle after pruning) get a zero gradient
            grad_delta = torch.empty_like(delta) if grid.flat is None else torch.zeros_like(delta)
        grad_first = torch.zeros_like(first_weight) if need_first else None
        grad_offset = torch.zeros_like(offset) if need_offset else None
        grad_out_weight = torch.zeros_like(out_weight) if need_out else None
        nones = (None,) * 5
        if not tiles:
            return grad_delta, grad_first, grad_offset, grad_out_weight, *nones
        width = _tile_size(tiles) * h
        buf, grad_buf = delta.new_empty(2**k, width), delta.new_empty(2**k, width)
        mix_buf, proj_buf = delta.new_empty(k, width), delta.new_empty(k + 1, width)
        # One matmul gives the projections' gradients and, in its last row, the offset's: sum over coalitions.
        masks_and_ones = torch.cat([masks_t, masks_t.new_ones(1, masks_t.shape[1])])
        for mods, r in tiles:
            where = grid.where(mods, r)
            d = grid.take(delta, mods, r, where)
            w1 = _pick(first_weight, 1, mods)
            proj, pre = _ReluModules._tile_forward(d, w1, grid.offset(offset, mods, r, where), buf)
            mb, nb = proj.shape[1:3]
            g = grid.take(grad, mods, r, where) * grid.take(active, mods, r, where).unsqueeze(-1)  # (k, mb, nb, O)
            w_out = _pick(out_weight, 0, mods)
            # Readout: mixed = W^T relu(pre); its gradient needs mixed, recomputed here. relu_ keeps the
            # sign pattern that relu' needs below (relu(pre) > 0 exactly where pre > 0).
            mixed = torch.mm(weights_t, pre.relu_(), out=mix_buf[:, : pre.shape[1]]).view(proj.shape)
            if need_out:
                _accumulate(grad_out_weight, 0, mods, torch.matmul(mixed.transpose(-1, -2), g).sum(0))
            grad_mixed = torch.matmul(g, w_out.transpose(-1, -2)).reshape(k, -1)  # (k, mb*nb*h)
            grad_z = torch.mm(weights_t.T, grad_mixed, out=grad_buf[:, : pre.shape[1]])
            grad_z.mul_(pre.gt_(0))  # relu'(pre), in place: no boolean mask is allocated
            both = torch.mm(masks_and_ones, grad_z, out=proj_buf[:, : pre.shape[1]])
            grad_proj = both[:k].view(proj.shape)  # (k, mb, nb, h)
            if need_offset:
                grid.add_offset(grad_offset, mods, r, where, both[k].view(mb, nb, h))
            if need_first:
                if d.shape[-1] == 1:
                    grad_w1 = (d * grad_proj).sum(2, keepdim=True)  # (k, mb, 1, h)
                else:
                    grad_w1 = torch.matmul(d.transpose(-1, -2), grad_proj)  # (k, mb, C, h)
                _accumulate(grad_first, 1, mods, grad_w1)
            if need_delta:
                if d.shape[-1] == 1:
                    grad_d = (grad_proj * w1).sum(-1, keepdim=True)
                else:
                    grad_d = torch.matmul(grad_proj, w1.transpose(-1, -2))
                grid.put(grad_delta, mods, r, where, grad_d)
        return grad_delta, grad_first, grad_offset, grad_out_weight, *nones


_NO_NORMS = np.empty((0, 0))  # the kernels' "not asked for": an empty array of the right rank


class _CompiledReluModules(torch.autograd.Function):
    """:class:`_ReluModules` on CPU tensors, as one compiled call per layer (:mod:`shapnet.kernels`).

    Feature-major: ``delta (F, N, C)``, ``slots (k, M)`` (module ``m``'s ``j``-th feature, ``F`` for a
    padding slot), ``active (F, N)`` bool or None (the kernel tests ``delta != 0`` itself); the weights,
    offset and Shapley constants as in :class:`_ReluModules`. The kernel finds each module's busy rows and
    skips the idle ones, whose values and gradients are exactly 0.

    Returns ``values (F, N, O)``, each feature's Shapley values summed over its modules, and the number of
    busy (module, row) pairs (an int, which autograd passes through).
    """

    @staticmethod
    def forward(ctx, delta, slots, first_weight, offset, out_weight, active, weights_t, masks_t):  # type: ignore[override]
        delta, first_weight, offset, out_weight = (
            t.detach().contiguous() for t in (delta, first_weight, offset, out_weight)
        )
        active = torch.empty(0, 0, dtype=torch.bool) if active is None else active.contiguous()
        out = delta.new_empty(*delta.shape[:2], out_weight.shape[-1])
        n_busy = kernels.relu_modules_forward(
            *(t.numpy() for t in (delta, slots, first_weight, offset, out_weight, active, weights_t)), out.numpy(),
            False, _NO_NORMS,
        )
        ctx.save_for_backward(delta, slots, first_weight, offset, out_weight, active, weights_t, masks_t)
        return out, n_busy

    @staticmethod
    def backward(ctx, grad, _):  # type: ignore[override]
        delta, slots, first_weight, offset, out_weight, active, weights_t, masks_t = ctx.saved_tensors
        needed = (ctx.needs_input_grad[0], *ctx.needs_input_grad[2:5])
        grads = [  # a gradient that is not needed is passed as an empty array of the same rank
            torch.zeros_like(t) if need else t.new_empty((0,) * t.dim())
            for t, need in zip((delta, first_weight, offset, out_weight), needed)
        ]
        masks_and_ones = torch.cat([masks_t, masks_t.new_ones(1, masks_t.shape[1])])
        kernels.relu_modules_backward(
            *(t.numpy() for t in (delta, slots, first_weight, offset, out_weight, active, weights_t, masks_and_ones)),
            grad.contiguous().numpy(),
            *(g.numpy() for g in grads),
        )
        grad_delta, grad_first, grad_offset, grad_out = (g if need else None for g, need in zip(grads, needed))
        return grad_delta, None, grad_first, grad_offset, grad_out, None, None, None


def _accumulate(total: torch.Tensor, dim: int, mods: slice, tile_grad: torch.Tensor) -> None:
    """Add a tile's gradient to ``total``'s module slice, or sum it over modules if ``total`` is shared."""
    if total.shape[dim] == 1 and tile_grad.shape[dim] > 1:
        tile_grad = tile_grad.sum(dim, keepdim=True)
    _pick(total, dim, mods).add_(tile_grad)


def _accumulate_offset(total: torch.Tensor, mods: slice, rows: slice, tile_grad: torch.Tensor) -> None:
    """Add an ``(mb, nb, h)`` tile gradient to an offset of shape ``(M or 1, N or 1, h)``."""
    reduce = [d for d in (0, 1) if total.shape[d] == 1 and tile_grad.shape[d] > 1]
    if reduce:
        tile_grad = tile_grad.sum(reduce, keepdim=True)
    _pick(_pick(total, 0, mods), 1, rows).add_(tile_grad)


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
            raise ValueError(f"group_size must be in [1, 10] (a module evaluates 2**k coalitions), got {group_size}.")
        self.n_modules, self.group_size = n_modules, group_size
        self.in_channels, self.out_channels = in_channels, out_channels
        self.hidden, self.activation = hidden, activation
        widths = [*hidden, out_channels]
        # (k, M, C_in, h0): the first linear map split per input feature (DESIGN §7).
        self.first_weight = nn.Parameter(torch.empty(group_size, n_modules, in_channels, widths[0]))
        has_first_bias = bool(hidden) or readout_bias
        self.first_bias = nn.Parameter(torch.empty(n_modules, widths[0])) if has_first_bias else None
        self.weights = nn.ParameterList(
            nn.Parameter(torch.empty(n_modules, w_in, w_out)) for w_in, w_out in zip(widths[:-1], widths[1:])
        )
        # Biases of the hidden layers after the first; the readout's bias is separate (optional).
        self.biases = nn.ParameterList(nn.Parameter(torch.empty(n_modules, w)) for w in widths[1:-1])
        self.out_bias = nn.Parameter(torch.empty(n_modules, out_channels)) if hidden and readout_bias else None
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
            self.out_bias.uniform_(-1.0 / math.sqrt(self.weights[-1].shape[1]), 1.0 / math.sqrt(self.weights[-1].shape[1]))

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

    def _hidden_tail(self, a: torch.Tensor) -> torch.Tensor:
        """Activations ``(M, X, h0)`` through the hidden layers after the first: ``(M, X, h_last)``."""
        act = ACTIVATIONS[self.activation]
        # There is one bias fewer than weights, so zip stops before the readout. (Slicing the ParameterList
        # instead would build a new Module on every call.)
        for w, b in zip(self.weights, self.biases):
            a = act(_matmul(a, w) + b.unsqueeze(1))
        return a

    def _readout(self, pre: torch.Tensor) -> torch.Tensor:
        """The inner MLP after its first linear map: pre-activations ``(M, X, h0)`` -> outputs ``(M, X, O)``."""
        if not self.hidden:  # a linear module: the first map is the readout, and ``pre`` holds its bias
            return pre
        out = _matmul(self._hidden_tail(ACTIVATIONS[self.activation](pre)), self.weights[-1])
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
        weight = self.first_weight if self.first_weight.shape[1] == m else self.first_weight.expand(-1, m, -1, -1)
        return self._readout(offset + torch.einsum("kmnc,kmch->mnh", delta, weight))

    def shapley(
        self,
        delta: torch.Tensor,
        offset: torch.Tensor,
        *,
        active: torch.Tensor | None = None,
        sparse: bool = False,
    ) -> ModuleShapley:
        """Shapley values of every module for every row.

        Args:
            delta: ``(k, M, N, C_in)``: each feature's input minus its reference.
            offset: ``(M, 1 or N, h0)`` from :meth:`offset`.
            active: ``(k, M, N)`` bool, features whose ``delta`` is non-zero; computed when None.
            sparse: skip the (module, row) pairs whose inputs are all at the reference; they get exactly
                0. The fused ReLU path computes each module's busy rows only (on the CPU the compiled kernel
                finds them; elsewhere the tiles gather them); other inner functions run on the busy rows
                packed into an ``(M, N_busy)`` grid (``N_busy`` = the busiest module's count).

        Returns:
            :class:`ModuleShapley` with ``values (k, M, N, O)``.
        """
        k, m, n, c = delta.shape
        if self.compiled_for(delta):
            # As feature-major (k*M, N, C), module m's features are j*M + m. The kernel finds the busy rows
            # (and, without `active`, the active features) itself, in the pass it makes anyway.
            values, n_busy = self.feature_shapley(
                delta.reshape(k * m, n, c), torch.arange(k * m).view(k, m), offset,
                None if active is None else active.reshape(k * m, n),
            )
            skipped = 1.0 - n_busy / max(1, m * n) if sparse else 0.0
            return ModuleShapley(values.view(k, m, n, -1), self.base(offset), skipped)
        if active is None:
            active = delta.abs().sum(-1) != 0  # a sum of |.| is 0 iff all are; ~4x faster than ne().any()
        if not sparse:
            return ModuleShapley(self._values(delta, offset, active), self.base(offset), 0.0)
        busy = active.any(0)  # (M, N)
        counts = busy.sum(1)  # (M,)
        skipped = 1.0 - float(counts.sum()) / max(1, m * n)
        n_busy = int(counts.max()) if busy.numel() else 0
        base = self.base(offset)
        if n_busy == 0:
            return ModuleShapley(delta.new_zeros(k, m, n, self.out_channels), base, skipped)
        # Each module's busy rows first (stable, so the order of rows is kept). The fused ReLU tiles compute
        # only those rows of each module, gathering them tile by tile; other inner functions run on a packed
        # (M, N_busy) copy.
        rows = torch.argsort((~busy).to(torch.uint8), dim=1, stable=True)[:, :n_busy]  # (M, N_busy)
        if self._fused:
            if offset.shape[1] > 1 and offset.shape[0] != m:
                offset = offset.expand(m, -1, -1)
            return ModuleShapley(self._values(delta, offset, active, rows, counts.tolist()), base, skipped)
        flat = (rows + torch.arange(m, device=rows.device).unsqueeze(1) * n).reshape(-1)  # (M*N_busy,)
        take = lambda t: t.reshape(t.shape[0], m * n, *t.shape[3:]).index_select(1, flat).view(  # noqa: E731
            t.shape[0], m, n_busy, *t.shape[3:]
        )
        packed_offset = offset if offset.shape[1] == 1 else take(offset.unsqueeze(0))[0]
        values = self._values(take(delta), packed_offset, take(active))
        out = values.new_zeros(k, m * n, values.shape[-1]).index_copy(1, flat, values.reshape(k, -1, values.shape[-1]))
        return ModuleShapley(out.view(k, m, n, -1), base, skipped)

    def compiled_for(self, delta: torch.Tensor) -> bool:
        """Whether :meth:`feature_shapley` applies: one hidden ReLU layer and CPU tensors."""
        return self._fused and kernels.applies(delta)

    def feature_shapley(
        self, delta: torch.Tensor, slots: torch.Tensor, offset: torch.Tensor, active: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, int]:
        """Shapley values on feature-major tensors, in one compiled call (:func:`compiled_for` must hold).

        Args:
            delta: ``(F, N, C_in)``, each feature's input minus its reference.
            slots: ``(k, M)`` long, module ``m``'s ``j``-th feature (``F`` for a padding slot).
            offset: ``(M or 1, 1 or N, h0)`` from :meth:`offset`.
            active: ``(F, N)`` bool, exactly the features whose ``delta`` is non-zero, if known.

        Returns:
            ``values (F, N, O)`` (each feature's values summed over its modules) and the number of busy
            (module, row) pairs: idle ones, whose features are all at the reference, are skipped.
        """
        weights_t, masks_t = self.weights_t.to(delta.dtype), self.masks_t.to(delta.dtype)
        return _CompiledReluModules.apply(
            delta, slots, self.first_weight, offset, self.weights[-1], active, weights_t, masks_t
        )

    def feature_shapley_into(
        self,
        delta: torch.Tensor,
        slots: torch.Tensor,
        offset: torch.Tensor,
        active: torch.Tensor | None = None,
        *,
        norms: bool = False,
    ) -> tuple[int, torch.Tensor | None]:
        """:meth:`feature_shapley` added to ``delta`` in place (a residual connection), without autograd.

        For inference: no ``(F, N, O)`` tensor is allocated, zero-filled or added. Needs :func:`compiled_for`,
        autograd off, ``C_in == O``, a contiguous ``delta`` and ``slots`` that partition the features.

        Returns:
            the number of busy (module, row) pairs and, if asked for, the features' L1 norms ``(F, N)`` after
            the addition (float64), which pruning needs next.
        """
        if torch.is_grad_enabled() and (delta.requires_grad or any(p.requires_grad for p in self.parameters())):
            raise RuntimeError("feature_shapley_into works in place: call it under torch.no_grad().")
        if not delta.is_contiguous() or delta.shape[-1] != self.out_channels:
            raise ValueError(
                f"feature_shapley_into needs a contiguous delta with {self.out_channels} channels, got shape "
                f"{tuple(delta.shape)} (contiguous: {delta.is_contiguous()})."
            )
        weights_t = self.weights_t.to(delta.dtype)
        active = torch.empty(0, 0, dtype=torch.bool) if active is None else active.contiguous()
        out_norms = torch.empty(delta.shape[:2], dtype=torch.float64) if norms else None
        array = delta.numpy()
        weights = (t.detach().contiguous().numpy() for t in (self.first_weight, offset, self.weights[-1]))
        n_busy = kernels.relu_modules_forward(
            array, slots.numpy(), *weights, active.numpy(), weights_t.numpy(), array, True,
            _NO_NORMS if out_norms is None else out_norms.numpy(),
        )
        return n_busy, out_norms

    @property
    def _fused(self) -> bool:
        """One hidden ReLU layer: the custom fused kernel applies."""
        return self.activation == "relu" and len(self.hidden) == 1

    def _values(
        self,
        delta: torch.Tensor,
        offset: torch.Tensor,
        active: torch.Tensor,
        rows: torch.Tensor | None = None,
        extents: list[int] | None = None,
    ) -> torch.Tensor:
        """Every module's Shapley values: ``(k, M, N, C_in) -> (k, M, N, O)``, on all rows by default.

        ``rows`` and ``extents`` (fused ReLU path only): each module's rows to compute and how many of them
        are busy, as in :class:`_ReluModules`; the other rows are idle and get 0. (On the compiled path
        :meth:`shapley` calls the kernel itself.)
        """
        if not self.hidden:
            # A linear module's Shapley values are its projections: phi_j = W_j (x_j - r_j).
            return torch.matmul(delta, self.first_weight).mul_(active.unsqueeze(-1))
        if self._fused:
            weights_t, masks_t = self.weights_t.to(delta.dtype), self.masks_t.to(delta.dtype)
            return _ReluModules.apply(
                delta, self.first_weight, offset, self.weights[-1], active, weights_t, masks_t, rows, extents
            )
        # The readout is linear and each player's Shapley weights sum to 0, so it applies to the
        # k mixed rows rather than to all 2**k coalitions, and its bias drops out.
        phi_hidden = self._mix_generic(torch.matmul(delta, self.first_weight), offset)
        return _matmul(phi_hidden, self.weights[-1]).mul_(active.unsqueeze(-1))  # (k, M, N, O)

    def _mix_generic(self, proj: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
        """``W^T z`` over all coalitions for any activation and depth: ``(k, M, N, h0) -> (k, M, N, h)``."""
        k, m, n, h0 = proj.shape
        pre = offset.expand(m, n, h0).unsqueeze(0)
        for j in range(k):
            pre = torch.cat([pre, pre + proj[j]])
        z = ACTIVATIONS[self.activation](pre)  # (2^k, M, N, h0)
        if len(self.hidden) > 1:
            z = self._hidden_tail(z.transpose(0, 1).reshape(m, -1, h0)).view(m, 2**k, n, -1).transpose(0, 1)
        weights_t = self.weights_t.to(z.dtype)
        return (weights_t @ z.reshape(2**k, -1)).view(k, m, n, -1)
