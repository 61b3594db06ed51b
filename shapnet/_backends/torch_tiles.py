"""One-hidden-layer ReLU modules as PyTorch ops fused per cache tile: any device, any float dtype.

``phi = (W^T relu(c0 + mask @ P)) @ W_L`` with ``P_j = delta_j @ W1_j`` (DESIGN §7): projection, the ``2**k``
coalitions, ReLU, Shapley mix, readout and the dummy-player mask run tile by tile in a custom autograd
function whose backward pass recomputes them, so no ``h``-wide tensor is written to main memory or kept
for backward. With ``sparse``, each module's busy rows are gathered tile by tile and idle rows cost nothing.
Inputs are in the tile layout of :class:`~shapnet.modules.GroupedMLP`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

from .torch_plain import busy_rows

if TYPE_CHECKING:
    from ..modules import GroupedMLP


def values(
    mlp: GroupedMLP, delta: torch.Tensor, offset: torch.Tensor, active: torch.Tensor, sparse: bool
) -> tuple[torch.Tensor, int | None]:
    """``(k, M, N, O)`` Shapley values and, with ``sparse``, the number of busy (module, row) pairs.

    Args:
        delta: ``(k, M, N, C_in)``; ``offset``: ``(M or 1, 1 or N, h)``; ``active``: ``(k, M, N)`` bool.
    """
    weights_t, masks_t = mlp.weights_t.to(delta.dtype), mlp.masks_t.to(delta.dtype)
    weights = (mlp.first_weight, offset, mlp.weights[-1], active, weights_t, masks_t)
    if not sparse:
        return ReluModules.apply(delta, *weights, None, None), None
    m = active.shape[1]
    rows, counts, total = busy_rows(active)
    if offset.shape[1] > 1 and offset.shape[0] != m:
        weights = (mlp.first_weight, offset.expand(m, -1, -1), *weights[2:])
    return ReluModules.apply(delta, *weights, rows, counts), total


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
        (slice(m0, m0 + 1), slice(n0, min(n0 + n_rows, ext[m0])))
        for m0 in range(m)
        for n0 in range(0, ext[m0], n_rows)
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

    def put(
        self, total: torch.Tensor, mods: slice, r: slice, where: torch.Tensor | None, value: torch.Tensor
    ) -> None:
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

    def add_offset(
        self, total: torch.Tensor, mods: slice, r: slice, where: torch.Tensor | None, grad: torch.Tensor
    ) -> None:
        """Add an ``(mb, nb, h)`` tile gradient to the offset's gradient ``total``."""
        if total.shape[1] == 1 or where is None:
            _accumulate_offset(total, mods, r, grad)
        else:
            total.view(self.m * self.n, -1).index_add_(0, where, grad.reshape(-1, grad.shape[-1]))


class ReluModules(torch.autograd.Function):
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
        proj = (
            d * w1 if d.shape[-1] == 1 else torch.matmul(d, w1)
        )  # (k, mb, nb, h); C = 1 is an outer product
        k, mb, nb, h = proj.shape
        pre = buf[:, : mb * nb * h]
        pre[0].view(mb, nb, h).copy_(offset.expand(mb, nb, h))
        flat = proj.reshape(k, -1)
        for j in range(k):  # coalition S + 2**j is coalition S plus P_j: k contiguous writes
            torch.add(pre[: 2**j], flat[j], out=pre[2**j : 2 ** (j + 1)])
        return proj, pre

    @staticmethod
    def forward(ctx, delta, first_weight, offset, out_weight, active, weights_t, masks_t, rows, extents):
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
            proj, pre = ReluModules._tile_forward(
                d, _pick(first_weight, 1, mods), grid.offset(offset, mods, r, where), buf
            )
            mixed = torch.mm(weights_t, pre.relu_(), out=mix_buf[:, : pre.shape[1]]).view(proj.shape)
            phi = torch.matmul(mixed, _pick(out_weight, 0, mods))  # (k, mb, nb, O)
            phi.mul_(grid.take(active, mods, r, where).unsqueeze(-1))
            grid.put(out, mods, r, where, phi)
        return out

    @staticmethod
    def backward(ctx, grad):
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
            proj, pre = ReluModules._tile_forward(d, w1, grid.offset(offset, mods, r, where), buf)
            mb, nb = proj.shape[1:3]
            g = grid.take(grad, mods, r, where) * grid.take(active, mods, r, where).unsqueeze(
                -1
            )  # (k, mb, nb, O)
            w_out = _pick(out_weight, 0, mods)
            # Readout: mixed = W^T relu(pre); its gradient needs mixed, recomputed here. relu_ keeps the
            # sign pattern that relu' needs below (relu(pre) > 0 exactly where pre > 0).
            mixed = torch.mm(weights_t, pre.relu_(), out=mix_buf[:, : pre.shape[1]]).view(proj.shape)
            if grad_out_weight is not None:  # need_out
                _accumulate(grad_out_weight, 0, mods, torch.matmul(mixed.transpose(-1, -2), g).sum(0))
            grad_mixed = torch.matmul(g, w_out.transpose(-1, -2)).reshape(k, -1)  # (k, mb*nb*h)
            grad_z = torch.mm(weights_t.T, grad_mixed, out=grad_buf[:, : pre.shape[1]])
            grad_z.mul_(pre.gt_(0))  # relu'(pre), in place: no boolean mask is allocated
            both = torch.mm(masks_and_ones, grad_z, out=proj_buf[:, : pre.shape[1]])
            grad_proj = both[:k].view(proj.shape)  # (k, mb, nb, h)
            if need_offset:
                grid.add_offset(grad_offset, mods, r, where, both[k].view(mb, nb, h))
            if grad_first is not None:  # need_first
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
