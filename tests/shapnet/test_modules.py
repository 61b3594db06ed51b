"""The cache-blocked ReLU coalition mix against the plain (all coalitions materialised) computation."""

from __future__ import annotations

import pytest
import torch

from shapnet import modules
from shapnet.modules import GroupedMLP


@pytest.mark.parametrize("block_bytes", [1, 3000, 1 << 20], ids=["row-tiles", "module-tiles", "one-tile"])
@pytest.mark.parametrize("offset_rows", ["shared", "per-row"])
@pytest.mark.parametrize("n_modules", [1, 5])
def test_tiled_relu_mix_matches_plain_mix_and_gradients(
    monkeypatch: pytest.MonkeyPatch, block_bytes: int, offset_rows: str, n_modules: int
) -> None:
    # Small blocks force tiles that are runs of rows of one module; medium ones, several whole modules.
    monkeypatch.setattr(modules, "_BLOCK_BYTES", block_bytes)
    torch.manual_seed(0)
    k, n, h = 3, 700, 2  # h = 2 so that 1024 columns are 512 rows: several row tiles per module
    mlp = GroupedMLP(n_modules, k, 2, 4, hidden=(h,)).double()
    proj = torch.randn(k, n_modules, n, h, dtype=torch.float64, requires_grad=True)
    offset = torch.randn(n_modules, n if offset_rows == "per-row" else 1, h, dtype=torch.float64, requires_grad=True)
    weights_t, masks_t = mlp.weights_t, mlp.masks_t

    tiled = modules._ReluCoalitionMix.apply(proj, offset, weights_t, masks_t)
    plain = mlp._mix_generic(proj, offset)
    assert (tiled - plain).abs().max() <= 1e-12

    upstream = torch.randn_like(tiled)
    grads_tiled = torch.autograd.grad(tiled, (proj, offset), upstream)
    grads_plain = torch.autograd.grad(plain, (proj, offset), upstream)
    for got, want in zip(grads_tiled, grads_plain):
        assert got.shape == want.shape
        assert (got - want).abs().max() <= 1e-10


def test_tiles_cover_the_grid_exactly_once() -> None:
    for m, n, h, block in [(5, 700, 2, 1), (5, 700, 2, 3000), (32, 512, 64, 1 << 20), (1, 46656, 32, 1 << 20)]:
        grid = torch.zeros(m, n, dtype=torch.long)
        original = modules._BLOCK_BYTES
        modules._BLOCK_BYTES = block
        try:
            for mods, rows in modules._tiles(m, n, h, 6, 8):
                grid[mods, rows] += 1
        finally:
            modules._BLOCK_BYTES = original
        assert bool((grid == 1).all()), (m, n, h, block)
