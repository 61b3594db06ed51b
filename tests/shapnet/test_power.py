"""Tests with power (issue #18 item 9): expectations derived independently of the code under test.

Each test here caught a deliberate bug that the rest of the suite let through (see docs/development.md,
"Mutation testing"): the Kernel SHAP sampler drawing sizes from the wrong distribution, pruning removing
the strongest units instead of the weakest, explanation slicing returning other rows.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from shapnet import DeepShapNet, ShallowShapNet, sample_kernel_coalitions
from shapnet._backends import compiled
from shapnet.pruning import prune_features_and_mask


# ----------------------------------------------------------------------- Kernel SHAP coalition sampler
def kernel_shap_size_distribution(d: int) -> list[float]:
    """P(|S| = s), s = 1..d-1, from Lundberg & Lee's (2017) per-coalition Shapley kernel
    ``pi(S) = (d - 1) / (C(d, |S|) |S| (d - |S|))``: a size carries ``C(d, s)`` coalitions of equal weight."""
    mass = [math.comb(d, s) * (d - 1) / (math.comb(d, s) * s * (d - s)) for s in range(1, d)]
    return [m / sum(mass) for m in mass]


@pytest.mark.parametrize("d", [2, 3, 6, 9])
def test_sampled_coalition_sizes_follow_the_kernel_shap_closed_form(d: int) -> None:
    n = 60_000
    masks = sample_kernel_coalitions(n, d, generator=torch.Generator().manual_seed(d))
    sizes = masks.sum(1)
    assert int(sizes.min()) >= 1 and int(sizes.max()) <= d - 1
    counts = torch.bincount(sizes, minlength=d + 1)[1:d].double()
    for s, p in enumerate(kernel_shap_size_distribution(d), start=1):
        sigma = math.sqrt(n * p * (1 - p))
        assert abs(float(counts[s - 1]) - n * p) <= 5 * sigma + 1e-9, (s, float(counts[s - 1]) / n, p)


def test_sampled_coalitions_of_one_size_are_uniform() -> None:
    d, size = 6, 2
    masks = sample_kernel_coalitions(80_000, d, generator=torch.Generator().manual_seed(1))
    picked = masks[masks.sum(1) == size]
    subsets = list(itertools.combinations(range(d), size))
    codes = (picked.long() * (2 ** torch.arange(d))).sum(1)
    expected = len(picked) / len(subsets)
    for subset in subsets:
        count = int((codes == sum(2**i for i in subset)).sum())
        assert abs(count - expected) <= 5 * math.sqrt(expected), (subset, count, expected)


# ----------------------------------------------------------------------------------------- pruning
@pytest.fixture(params=["compiled", "torch"])
def path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "torch":
        monkeypatch.setattr(compiled, "applies", lambda tensor: False)
    return request.param


def ranked_representation(n_features: int, batch: int, channels: int, n_real: int | None = None) -> torch.Tensor:
    """``(F, B, C)`` whose feature ``f`` of sample ``b`` has L1 norm ``rank[b][f] + 1`` (distinct per sample);
    features from ``n_real`` on are padding (zero)."""
    n_real = n_features if n_real is None else n_real
    gen = torch.Generator().manual_seed(5)
    rep = torch.zeros(n_features, batch, channels, dtype=torch.float64)
    for b in range(batch):
        rank = torch.randperm(n_real, generator=gen)
        split = torch.rand(n_real, channels, generator=gen, dtype=torch.float64) + 0.1
        split = split / split.sum(1, keepdim=True)  # each feature's norm spread over its channels
        signs = torch.where(torch.rand(n_real, channels, generator=gen) < 0.5, -1.0, 1.0).double()
        rep[:n_real, b] = signs * split * (rank.double() + 1).unsqueeze(1)
    return rep


def zeroed(rep: torch.Tensor) -> list[set[int]]:
    """The features that are all zero, per sample."""
    return [set(torch.nonzero(rep[:, b].abs().sum(-1) == 0).flatten().tolist()) for b in range(rep.shape[1])]


def test_pruning_by_fraction_removes_exactly_the_weakest_features(path: str) -> None:
    rep = ranked_representation(10, 4, 3)
    norms = rep.abs().sum(-1)  # (F, B)
    pruned, active = prune_features_and_mask(rep.clone(), 0.4, None)
    for b, gone in enumerate(zeroed(pruned)):
        weakest = set(norms[:, b].argsort()[:4].tolist())  # floor(0.4 * 10) = 4 units
        assert gone == weakest, (b, gone, weakest)
    torch.testing.assert_close(pruned, rep * (pruned != 0).any(-1, keepdim=True))  # survivors untouched
    assert torch.equal(active, pruned.abs().sum(-1) != 0)


def test_pruning_by_threshold_removes_the_features_below_it(path: str) -> None:
    rep = ranked_representation(8, 3, 2)
    pruned, _ = prune_features_and_mask(rep.clone(), None, 3.5)  # norms are 1..8: prune 1, 2, 3
    norms = rep.abs().sum(-1)
    for b, gone in enumerate(zeroed(pruned)):
        assert gone == set(torch.nonzero(norms[:, b] < 3.5).flatten().tolist()) and len(gone) == 3


def test_pruning_ignores_padding_features(path: str) -> None:
    rep = ranked_representation(8, 3, 2, n_real=6)
    norms = rep.abs().sum(-1)
    pruned, _ = prune_features_and_mask(rep.clone(), 0.5, None, n_real=6)  # floor(0.5 * 6) = 3 real units
    for b, gone in enumerate(zeroed(pruned)):
        assert gone == set(norms[:6, b].argsort()[:3].tolist()) | {6, 7}


def test_pruning_whole_groups_removes_the_weakest_groups(path: str) -> None:
    rep = ranked_representation(8, 3, 2)
    groups = torch.tensor([[0, 4], [1, 5], [2, 6], [3, 7]])
    pruned, _ = prune_features_and_mask(rep.clone(), 0.5, None, groups=groups)
    norms = rep.abs().sum(-1)
    for b, gone in enumerate(zeroed(pruned)):
        group_norm = norms[groups, b].mean(1)  # (M,)
        weakest = group_norm.argsort()[:2]
        assert gone == set(groups[weakest].flatten().tolist()), (b, gone)


def test_pruned_model_zeroes_the_weakest_features_of_each_layer(path: str) -> None:
    """End to end: layer l's representation after pruning keeps exactly the strongest features of the
    unpruned representation of the same layer input."""
    torch.manual_seed(0)
    model = DeepShapNet(8, 2, channels=3, hidden=(6,), prune=0.5, residual=False).double()
    dense = DeepShapNet(8, 2, channels=3, hidden=(6,), residual=False).double()
    dense.load_state_dict(model.state_dict())
    x = torch.randn(4, 8, dtype=torch.float64)
    with torch.no_grad():
        layers = model.explain(x, layers=True).layers
        first = dense.explain(x, layers=True).layers[0]  # layer 0 sees x itself in both models
    for b in range(4):
        gone = set(torch.nonzero(layers[0][b].abs().sum(-1) == 0).flatten().tolist())
        assert gone == set(first[b].abs().sum(-1).argsort()[:4].tolist())


# ------------------------------------------------------------------------------- explanation slicing
def test_explanation_slicing_returns_the_rows_asked_for() -> None:
    model = ShallowShapNet(4, 3, hidden=(5,)).double()
    x = torch.randn(6, 4, dtype=torch.float64)
    ex = model.explain(x, layers=True)
    for index in (2, slice(1, 4), torch.tensor([5, 0, 3]), -1):
        part = ex[index]
        rows = torch.arange(6)[index].reshape(-1)
        sub = model.explain(x[rows], layers=True)
        torch.testing.assert_close(part.values, sub.values)
        torch.testing.assert_close(part.base_values, sub.base_values)
        torch.testing.assert_close(part.predictions, sub.predictions)
        torch.testing.assert_close(part.layers[0], sub.layers[0])
