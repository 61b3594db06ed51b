"""The fused, cache-tiled ReLU module computation against the plain one (all coalitions materialised)."""

from __future__ import annotations

import pytest
import torch

from shapnet._backends import torch_plain, torch_tiles
from shapnet.modules import GroupedMLP


@pytest.mark.parametrize("block_bytes", [1, 6000, 1 << 21], ids=["row-tiles", "module-tiles", "one-tile"])
@pytest.mark.parametrize("offset_rows", ["shared", "per-row"])
@pytest.mark.parametrize(("n_modules", "in_channels"), [(1, 3), (5, 3), (5, 1)])
def test_fused_relu_modules_match_plain_computation_and_gradients(
    monkeypatch: pytest.MonkeyPatch, block_bytes: int, offset_rows: str, n_modules: int, in_channels: int
) -> None:
    # Tiny blocks force tiles that are runs of rows of one module; medium ones, several whole modules.
    monkeypatch.setattr(torch_tiles, "_BLOCK_BYTES", block_bytes)
    torch.manual_seed(0)
    k, n, h, o = 3, 700, 2, 4  # h = 2 so that 1024 columns are 512 rows: several row tiles per module
    mlp = GroupedMLP(n_modules, k, in_channels, o, hidden=(h,)).double()
    delta = torch.randn(k, n_modules, n, in_channels, dtype=torch.float64)
    delta[:, :, :50] = 0.0
    delta.requires_grad_(True)
    offset = torch.randn(
        n_modules, n if offset_rows == "per-row" else 1, h, dtype=torch.float64, requires_grad=True
    )
    first, out_weight = mlp.first_weight, mlp.weights[-1]

    active = delta.detach().abs().sum(-1) != 0
    fused = torch_tiles.ReluModules.apply(
        delta, first, offset, out_weight, active, mlp.weights_t, mlp.masks_t, None, None
    )
    plain = torch_plain.matmul(
        torch_plain.mix(mlp, torch.matmul(delta, first), offset), out_weight
    ) * active.unsqueeze(-1)
    assert fused.shape == (k, n_modules, n, o)
    assert (fused - plain).abs().max() <= 1e-12

    upstream = torch.randn_like(fused)
    inputs = (delta, first, offset, out_weight)
    for got, want in zip(
        torch.autograd.grad(fused, inputs, upstream), torch.autograd.grad(plain, inputs, upstream)
    ):
        assert got.shape == want.shape
        assert (got - want).abs().max() <= 1e-10


def test_fused_relu_modules_pass_gradcheck() -> None:
    torch.manual_seed(1)
    mlp = GroupedMLP(2, 2, 2, 3, hidden=(4,)).double()
    args = (
        torch.randn(2, 2, 5, 2, dtype=torch.float64, requires_grad=True),
        mlp.first_weight.detach().clone().requires_grad_(),
        torch.randn(2, 1, 4, dtype=torch.float64, requires_grad=True),
        mlp.weights[-1].detach().clone().requires_grad_(),
    )
    active = torch.ones(2, 2, 5, dtype=torch.bool)
    fn = lambda d, w1, c0, wl: torch_tiles.ReluModules.apply(  # noqa: E731
        d, w1, c0, wl, active, mlp.weights_t, mlp.masks_t, None, None
    )
    assert torch.autograd.gradcheck(fn, args)


def test_tiles_cover_the_grid_exactly_once(monkeypatch: pytest.MonkeyPatch) -> None:
    for m, n, h, block in [
        (5, 700, 2, 1),
        (5, 700, 2, 3000),
        (32, 512, 64, 1 << 21),
        (1, 46656, 32, 1 << 21),
    ]:
        monkeypatch.setattr(torch_tiles, "_BLOCK_BYTES", block)
        grid = torch.zeros(m, n, dtype=torch.long)
        for mods, rows in torch_tiles._tiles(m, n, h, 6, 8):
            grid[mods, rows] += 1
        assert bool((grid == 1).all()), (m, n, h, block)


@pytest.mark.parametrize(
    "groups",
    [[(0, 4), (1, 5), (2, 6), (3, 7)], [(0, 1), (2, 3), (4, 5), (6, 7)], [(5, 0), (3, 6), (1, 7), (4, 2)]],
    ids=["butterfly-stride-4", "disjoint", "shuffled-partition"],
)
def test_partition_gather_paths_agree_with_the_general_index_path(groups: list[tuple[int, int]]) -> None:
    from shapnet.layers import ShapleyLayer

    torch.manual_seed(0)
    layer = ShapleyLayer(groups, 3, 2, hidden=(4,)).double()
    assert layer.index.partition
    x = torch.randn(8, 5, 3, dtype=torch.float64, requires_grad=True)  # (F, B, C) feature-major

    def run() -> tuple[torch.Tensor, torch.Tensor]:
        values = layer.forward_features(x).values
        (grad,) = torch.autograd.grad(
            values, x, torch.arange(values.numel(), dtype=values.dtype).view_as(values)
        )
        return values, grad

    fast = run()
    layer.index.stride = None  # the permutation path
    permuted = run()
    layer.index.partition = False  # the general gather + index_add path
    general = run()
    for got in (fast, permuted):
        assert torch.allclose(got[0], general[0], atol=1e-12) and torch.allclose(
            got[1], general[1], atol=1e-12
        )


def test_tiles_with_extents_cover_each_modules_leading_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    gen = torch.Generator().manual_seed(0)
    for m, n, h, block in [(5, 700, 2, 1), (5, 700, 2, 3000), (32, 512, 64, 1 << 21), (8, 300, 4, 1 << 16)]:
        monkeypatch.setattr(torch_tiles, "_BLOCK_BYTES", block)
        extents = torch.randint(0, n + 1, (m,), generator=gen).tolist()
        extents[0] = 0  # a module with nothing to compute
        grid = torch.zeros(m, n, dtype=torch.long)
        for mods, rows in torch_tiles._tiles(m, n, h, 6, 8, extents):
            assert rows.stop <= max(extents[mods]), "a tile runs past its modules' longest extent"
            grid[mods, rows] += 1
        assert bool((grid <= 1).all())
        for module, extent in enumerate(extents):
            assert bool((grid[module, :extent] == 1).all()), (m, n, h, block, module)
    assert torch_tiles._tiles(3, 10, 4, 6, 8, [0, 0, 0]) == []


@pytest.mark.parametrize("block_bytes", [1, 6000, 1 << 21], ids=["row-tiles", "module-tiles", "one-tile"])
@pytest.mark.parametrize("offset_rows", ["shared", "per-row"])
def test_fused_relu_modules_on_gathered_busy_rows_match_the_dense_grid(
    monkeypatch: pytest.MonkeyPatch, block_bytes: int, offset_rows: str
) -> None:
    # Pruning: each module computes only its busy rows (gathered tile by tile); idle rows (all inputs at
    # the reference) get exactly 0, as on the dense grid, and so do the gradients.
    monkeypatch.setattr(torch_tiles, "_BLOCK_BYTES", block_bytes)
    torch.manual_seed(0)
    k, m, n, c, h, o = 2, 4, 600, 3, 2, 3
    mlp = GroupedMLP(m, k, c, o, hidden=(h,)).double()
    busy = torch.rand(m, n) < torch.tensor([1.0, 0.0, 0.03, 0.5]).unsqueeze(1)  # full, empty, sparse, half
    delta = torch.randn(k, m, n, c, dtype=torch.float64) * busy.unsqueeze(0).unsqueeze(-1)
    delta[0, 3, busy[3].nonzero()[:5, 0]] = 0.0  # inactive features of busy rows still get exact zeros
    delta.requires_grad_(True)
    offset = torch.randn(m, n if offset_rows == "per-row" else 1, h, dtype=torch.float64, requires_grad=True)
    active = delta.detach().abs().sum(-1) != 0
    counts = busy.sum(1)
    rows = torch.argsort((~busy).to(torch.uint8), dim=1, stable=True)[:, : int(counts.max())]
    inputs = (delta, mlp.first_weight, offset, mlp.weights[-1])
    args = (active, mlp.weights_t, mlp.masks_t)
    full = torch_tiles.ReluModules.apply(*inputs, *args, None, None)
    gathered = torch_tiles.ReluModules.apply(*inputs, *args, rows, counts.tolist())
    assert (gathered - full).abs().max() <= 1e-12
    assert bool((gathered[:, ~busy] == 0).all()) and bool((gathered[0, 3][~active[0, 3]] == 0).all())
    upstream = torch.randn_like(full)
    for got, want in zip(
        torch.autograd.grad(gathered, inputs, upstream), torch.autograd.grad(full, inputs, upstream)
    ):
        assert (got - want).abs().max() <= 1e-12
