"""Threaded compiled kernels (issue #15, item 1): the same values and gradients on any number of threads."""

from __future__ import annotations

import pytest
import torch

from shapnet import DeepShapNet, Pruning, ShallowShapNet, Stage, VisionShapNet
from shapnet._backends import compiled


@pytest.fixture
def threads():
    """Set torch's thread count for a test (the kernels follow it) and restore it afterwards."""
    before = torch.get_num_threads()
    yield torch.set_num_threads
    torch.set_num_threads(before)


def test_rows_are_split_over_the_threads_torch_may_use(threads) -> None:
    threads(3)
    assert compiled.row_ranges(300) == [(0, 100), (100, 200), (200, 300)]
    assert compiled.row_ranges(100) == [(0, 100)]  # too few rows for a second thread
    assert compiled.row_ranges(0) == [(0, 0)]
    threads(1)
    assert compiled.row_ranges(10_000) == [(0, 10_000)]


def _run(make, x, n_threads, threads):
    threads(n_threads)
    torch.manual_seed(0)
    model = make().double()
    with torch.no_grad():
        explanation = model.explain(x)  # the in-place inference path
    collected = model.explain(x, layers=True)  # the differentiable path
    grads = torch.autograd.grad(
        collected.values.square().sum() + model(x).sum(), list(model.parameters()), allow_unused=True
    )
    return explanation, collected, grads


@pytest.mark.parametrize(
    "make",
    [
        lambda: DeepShapNet(16, 3, channels=6, hidden=(8,), reference=torch.randn(16)),
        lambda: DeepShapNet(9, 2, channels=4, group_size=3, hidden=(7,)),  # padded to 27 features
        lambda: DeepShapNet(16, 3, channels=6, hidden=(8,), prune=Pruning(fraction=0.5, granularity="group")),
        lambda: DeepShapNet(16, 3, channels=6, hidden=(8,), prune=Pruning(fraction=0.25, threshold=0.1)),
        lambda: ShallowShapNet(6, 3, groups="pairs", hidden=(5,), reference=torch.randn(6)),
        lambda: VisionShapNet(
            1,
            3,
            stages=[Stage(4, hidden=(8,)), Stage(4, dilation=2, hidden=(8,), split=2)],
            image_size=(6, 6),
            readout_hidden=(8,),
            prune=0.5,
            reference=torch.rand(1, 6, 6),
        ),
    ],
    ids=[
        "deep-reference",
        "deep-k3-padded",
        "deep-group-pruning",
        "deep-threshold",
        "shallow-pairs",
        "vision",
    ],
)
@pytest.mark.parametrize("n_threads", [2, 3])
def test_threaded_kernels_match_one_thread(make, n_threads, threads) -> None:
    torch.manual_seed(1)
    shape = make().input_shape
    x = torch.randn(250, *shape, dtype=torch.float64)  # several row ranges of at least 64 rows
    x[:40] = 0.0  # rows at the (zero) input: idle modules in every range
    one = _run(make, x, 1, threads)
    many = _run(make, x, n_threads, threads)
    for a, b in zip(one[:2], many[:2]):
        torch.testing.assert_close(a.values, b.values, atol=1e-10, rtol=1e-10)
        torch.testing.assert_close(a.predictions, b.predictions, atol=1e-10, rtol=1e-10)
        assert a.skipped == b.skipped
    for a, b in zip(one[2], many[2]):
        if a is None or b is None:
            assert a is None and b is None
        else:
            torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-10)


def test_threaded_layer_gradients_match_one_thread(threads) -> None:
    """Per-row offsets (a per-sample reference) and shared ones, every gradient the kernel returns."""
    gen = torch.Generator().manual_seed(2)
    k, m, n, c, h, o = 2, 5, 400, 3, 6, 4
    delta = torch.randn(k * m, n, c, dtype=torch.float64, generator=gen)
    delta[:, :100] *= (torch.rand(k * m, 100, 1, generator=gen) < 0.3).to(torch.float64)
    slots = torch.arange(k * m).view(k, m)
    from shapnet.coalitions import coalition_masks, shapley_weights

    constants = (
        shapley_weights(k, torch.float64).T.contiguous(),
        coalition_masks(k, torch.float64).T.contiguous(),
    )
    for offset_rows in (1, n):
        leaves = [
            delta,
            torch.randn(k, m, c, h, dtype=torch.float64, generator=gen),
            torch.randn(m, offset_rows, h, dtype=torch.float64, generator=gen),
            torch.randn(m, h, o, dtype=torch.float64, generator=gen),
        ]
        upstream = torch.randn(k * m, n, o, dtype=torch.float64, generator=gen)
        results = []
        for n_threads in (1, 4):
            threads(n_threads)
            inputs = [t.clone().requires_grad_() for t in leaves]
            values, busy = compiled.CompiledReluModules.apply(
                inputs[0], slots, inputs[1], inputs[2], inputs[3], None, *constants
            )
            results.append((values, busy, torch.autograd.grad(values, inputs, upstream)))
        (v1, b1, g1), (v4, b4, g4) = results
        assert b1 == b4
        assert torch.equal(v1, v4)  # each row is computed the same way whatever the split
        for a, b in zip(g1, g4):
            torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-10)
