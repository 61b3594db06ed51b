"""Shapley values of any inner function as plain PyTorch ops, with all ``2**k`` coalitions materialised.

Used for linear modules, activations other than ReLU and more than one hidden layer. Inputs are in the tile
layout of :class:`~shapnet.modules.GroupedMLP`: ``delta (k, M, N, C_in)``, ``offset (M or 1, 1 or N, h0)``,
``active (k, M, N)`` bool.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from ..modules import GroupedMLP


def busy_rows(active: torch.Tensor) -> tuple[torch.Tensor, list[int], int]:
    """Each module's busy rows (some feature active), first and in order.

    Args:
        active: ``(k, M, N)`` bool.

    Returns:
        ``rows (M, N_busy)`` (``N_busy`` = the busiest module's count; a module's rows after its own count
        are idle ones), the per-module counts, and their total.
    """
    busy = active.any(0)  # (M, N)
    counts = busy.sum(1)  # (M,)
    n_busy = int(counts.max()) if busy.numel() else 0
    rows = torch.argsort((~busy).to(torch.uint8), dim=1, stable=True)[
        :, :n_busy
    ]  # stable: rows keep their order
    return rows, counts.tolist(), int(counts.sum())


def values(
    mlp: GroupedMLP, delta: torch.Tensor, offset: torch.Tensor, active: torch.Tensor, sparse: bool
) -> tuple[torch.Tensor, int | None]:
    """``(k, M, N, O)`` Shapley values and, with ``sparse``, the number of busy (module, row) pairs.

    With ``sparse`` the busy rows are packed into an ``(M, N_busy)`` grid first, and idle ones get 0.
    """
    if not sparse:
        return _dense(mlp, delta, offset, active), None
    k, m, n = active.shape
    rows, _, total = busy_rows(active)
    n_busy = rows.shape[1]
    flat = (rows + torch.arange(m, device=rows.device).unsqueeze(1) * n).reshape(-1)  # (M*N_busy,)

    def take(t: torch.Tensor) -> torch.Tensor:
        return (
            t.reshape(t.shape[0], m * n, *t.shape[3:])
            .index_select(1, flat)
            .view(t.shape[0], m, n_busy, *t.shape[3:])
        )

    packed_offset = offset if offset.shape[1] == 1 else take(offset.expand(m, -1, -1).unsqueeze(0))[0]
    packed = _dense(mlp, take(delta), packed_offset, take(active))
    o = packed.shape[-1]  # idle rows stay 0; sizes spelled out, as -1 is ambiguous when nothing is busy
    out = packed.new_zeros(k, m * n, o).index_copy(1, flat, packed.reshape(k, m * n_busy, o))
    return out.view(k, m, n, o), total


def _dense(mlp: GroupedMLP, delta: torch.Tensor, offset: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
    if not mlp.hidden:
        # A linear module's Shapley values are its projections: phi_j = W_j (x_j - r_j).
        return torch.matmul(delta, mlp.first_weight).mul_(active.unsqueeze(-1))
    # The readout is linear and each player's Shapley weights sum to 0, so it applies to the
    # k mixed rows rather than to all 2**k coalitions, and its bias drops out.
    phi_hidden = mix(mlp, torch.matmul(delta, mlp.first_weight), offset)
    return matmul(phi_hidden, mlp.weights[-1]).mul_(active.unsqueeze(-1))  # (k, M, N, O)


def mix(mlp: GroupedMLP, proj: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
    """``W^T z`` over all coalitions for any activation and depth: ``(k, M, N, h0) -> (k, M, N, h)``."""
    k, m, n, h0 = proj.shape
    pre = offset.expand(m, n, h0).unsqueeze(0)
    for j in range(k):
        pre = torch.cat([pre, pre + proj[j]])
    z = mlp.act(pre)  # (2^k, M, N, h0)
    if len(mlp.hidden) > 1:
        z = mlp.hidden_tail(z.transpose(0, 1).reshape(m, 2**k * n, h0))  # (M, 2^k * N, h)
        z = z.view(m, 2**k, n, z.shape[-1]).transpose(0, 1)
    weights_t = mlp.weights_t.to(z.dtype)
    h = z.shape[-1]  # sizes spelled out: a -1 is ambiguous for an empty batch
    return (weights_t @ z.reshape(2**k, m * n * h)).view(k, m, n, h)


def matmul(a: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """``(..., M, X, h) @ (M or 1, h, h')``; a shared weight (M = 1) runs as one large 2-D matmul."""
    if w.shape[0] == 1:
        return (a.reshape(math.prod(a.shape[:-1]), a.shape[-1]) @ w[0]).view(*a.shape[:-1], w.shape[-1])
    if a.dim() == 3:
        return torch.bmm(a, w)
    return torch.matmul(a, w)
