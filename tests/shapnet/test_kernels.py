"""The compiled CPU kernels (numba) against the PyTorch implementation they replace on the CPU."""

from __future__ import annotations

import pytest
import torch

from shapnet import DeepShapNet, Pruning, ShallowShapNet, ShapleyLayer, Stage, VisionShapNet, kernels, pruning
from shapnet.coalitions import coalition_masks, shapley_weights
from shapnet._backends import compiled
from shapnet._backends.torch_tiles import ReluModules

# (k, M, N, C_in, h, O, M_w, M_offset, N_offset): per-module and shared weights, shared and per-row offsets,
# one input channel (the first layer's outer product), k from 1 to 4, and more rows than one chunk.
CONFIGS = [
    (2, 5, 300, 1, 8, 3, 5, 5, 1),
    (3, 4, 70, 5, 7, 2, 1, 1, 70),
    (4, 1, 600, 3, 9, 4, 1, 1, 1),
    (1, 3, 10, 2, 5, 2, 3, 3, 10),
    (2, 6, 20, 3, 4, 5, 6, 1, 1),
]


def _inputs(config, dtype, idle, seed=0):
    k, m, n, c, h, o, m_w, m_off, n_off = config
    gen = torch.Generator().manual_seed(seed)
    delta = torch.randn(k, m, n, c, dtype=dtype, generator=gen)
    delta[torch.rand(k, m, n, generator=gen) < idle] = 0  # inactive features, and whole idle rows
    delta[:, :, : n // 4] *= (torch.rand(m, n // 4, 1, generator=gen) < 0.5).to(dtype)
    active = delta.abs().sum(-1) != 0
    weights = [
        torch.randn(k, m_w, c, h, dtype=dtype, generator=gen),
        torch.randn(m_off, n_off, h, dtype=dtype, generator=gen),
        torch.randn(m_w, h, o, dtype=dtype, generator=gen),
    ]
    constants = (shapley_weights(k, dtype).T.contiguous(), coalition_masks(k, dtype).T.contiguous())
    return delta, weights, active, constants


def _compiled(delta, w1, offset, w_out, active, constants):
    """The compiled kernel on the tile layout ``(k, M, N, C)``: feature-major with feature ``j*M + m``."""
    k, m, n, c = delta.shape
    slots = torch.arange(k * m).view(k, m)
    values, busy = compiled.CompiledReluModules.apply(
        delta.reshape(k * m, n, c), slots, w1, offset, w_out, active.reshape(k * m, n), *constants
    )
    return values.view(k, m, n, -1), busy


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("idle", [0.0, 0.5])
def test_compiled_modules_match_the_torch_tiles(config, dtype, idle) -> None:
    delta, (w1, offset, w_out), active, constants = _inputs(config, dtype, idle)
    leaves = [t.clone().requires_grad_() for t in (delta, w1, offset, w_out)]
    twins = [t.clone().requires_grad_() for t in (delta, w1, offset, w_out)]
    expected = ReluModules.apply(leaves[0], leaves[1], leaves[2], leaves[3], active, *constants, None, None)
    got, busy = _compiled(*twins, active, constants)
    assert busy == int(active.any(0).sum())  # every (module, row) with an active feature, and no other
    tol = 1e-12 if dtype == torch.float64 else 1e-4
    scale = expected.abs().max().item()
    assert (got - expected).abs().max().item() <= tol * scale
    assert (got[~active] == 0).all()  # missingness, exactly
    grad = torch.randn_like(expected)
    for a, b in zip(torch.autograd.grad(expected, leaves, grad), torch.autograd.grad(got, twins, grad)):
        assert (a - b).abs().max().item() <= tol * max(1.0, a.abs().max().item())


def test_compiled_modules_gradcheck() -> None:
    delta, (w1, offset, w_out), active, constants = _inputs(
        (2, 3, 12, 2, 5, 3, 3, 3, 1), torch.float64, 0.3, seed=1
    )
    inputs = [t.requires_grad_() for t in (delta, w1, offset, w_out)]
    fn = lambda d, a, b, c: _compiled(d, a, b, c, active, constants)[0]  # noqa: E731
    assert torch.autograd.gradcheck(fn, inputs)


def test_compiled_modules_return_only_the_gradients_asked_for() -> None:
    delta, (w1, offset, w_out), active, constants = _inputs(CONFIGS[0], torch.float64, 0.2)
    probe = torch.randn(delta.shape[:3] + (w_out.shape[-1],), dtype=torch.float64)  # a generic upstream gradient
    w1.requires_grad_()
    out, _ = _compiled(delta, w1, offset, w_out, active, constants)
    (grad_w1,) = torch.autograd.grad((out * probe).sum(), [w1])
    # Asking for one gradient gives the same value as asking for all of them, and as the PyTorch tiles.
    leaves = [t.detach().clone().requires_grad_() for t in (delta, w1, offset, w_out)]
    full, _ = _compiled(*leaves, active, constants)
    all_grads = torch.autograd.grad((full * probe).sum(), leaves)
    torch.testing.assert_close(grad_w1, all_grads[1], rtol=0, atol=1e-12)
    tiles = [t.detach().clone().requires_grad_() for t in (delta, w1, offset, w_out)]
    expected = ReluModules.apply(tiles[0], tiles[1], tiles[2], tiles[3], active, *constants, None, None)
    torch.testing.assert_close(grad_w1, torch.autograd.grad((expected * probe).sum(), tiles[1])[0])
    assert float(grad_w1.abs().sum()) > 0 and delta.grad is None and offset.grad is None and w_out.grad is None


def _explain_and_grads(make, x, torch_path_on, monkeypatch):
    if torch_path_on:
        monkeypatch.setattr(compiled, "applies", lambda tensor: False)
    torch.manual_seed(0)
    model = make().double()
    explanation = model.explain(x)
    grads = torch.autograd.grad(model(x).square().sum(), list(model.parameters()), allow_unused=True)
    monkeypatch.undo()
    return explanation, grads


@pytest.mark.parametrize(
    "make",
    [
        lambda: DeepShapNet(8, 3, channels=5, hidden=(6,), reference=torch.randn(8)),
        lambda: DeepShapNet(5, 4, channels=4, hidden=(6,)),  # padded to 8 features
        lambda: DeepShapNet(9, 2, channels=4, group_size=3, hidden=(7,)),
        lambda: DeepShapNet(16, 3, channels=6, hidden=(8,), prune=Pruning(fraction=0.5, granularity="group")),
        lambda: DeepShapNet(16, 3, channels=6, hidden=(8,), prune=Pruning(fraction=0.5, threshold=0.1)),
        lambda: ShallowShapNet(
            6, 3, groups="pairs", hidden=(5,), reference=torch.randn(6)
        ),  # overlapping groups
        lambda: ShallowShapNet(7, 2, groups=[(0, 1, 2), (3,), (4, 5), (6, 0)], hidden=(4,)),  # padding slots
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
)
def test_models_agree_on_both_paths(make, monkeypatch: pytest.MonkeyPatch) -> None:
    """Whole models, explanation and training gradients, compiled kernels against the PyTorch tiles."""
    torch.manual_seed(1)
    shape = make().input_shape
    x = torch.randn(12, *shape, dtype=torch.float64)
    x[:3] = 0.0  # whole rows at the (zero) input: idle modules
    compiled, compiled_grads = _explain_and_grads(make, x, False, monkeypatch)
    tiles, tiles_grads = _explain_and_grads(make, x, True, monkeypatch)
    torch.testing.assert_close(compiled.values, tiles.values, atol=1e-11, rtol=1e-11)
    torch.testing.assert_close(compiled.predictions, tiles.predictions, atol=1e-11, rtol=1e-11)
    assert compiled.skipped == tiles.skipped
    for a, b in zip(compiled_grads, tiles_grads):
        if a is None or b is None:
            assert a is None and b is None
        else:
            torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("granularity", ["feature", "group"])
@pytest.mark.parametrize("fraction, threshold", [(0.5, None), (None, 0.9), (0.25, 0.5), (0.75, None)])
@pytest.mark.parametrize("n_real", [16, 13])
def test_compiled_pruning_matches_torch(granularity, fraction, threshold, n_real) -> None:
    gen = torch.Generator().manual_seed(3)
    rep = torch.randn(16, 40, 3, generator=gen) * torch.rand(16, 40, 1, generator=gen)
    rep[n_real:] = 0  # padding features are always 0
    rep[2, :5] = 0  # features that are already at the reference
    groups = torch.arange(16).view(2, 8).T.contiguous() if granularity == "group" else None
    expected = pruning._prune_torch(rep, fraction, threshold, n_real, groups)
    got = compiled.prune(rep, fraction, threshold, n_real, groups)
    assert torch.equal(got[1], expected[1])
    assert torch.equal(got[0], expected[0])
    copy = rep.clone()  # in place: the same, written into the input
    pruned, active = compiled.prune(copy, fraction, threshold, n_real, groups, True)
    assert pruned.data_ptr() == copy.data_ptr()
    assert torch.equal(pruned, expected[0]) and torch.equal(active, expected[1])


def test_compiled_pruning_ranks_many_units_by_sorting() -> None:
    """More units than _RANK_BY_COMPARISON (pixels) take the sorting path: the same choice as top-k."""
    gen = torch.Generator().manual_seed(4)
    rep = torch.randn(kernels._RANK_BY_COMPARISON + 72, 30, 2, generator=gen)
    for fraction, threshold in [(0.5, None), (0.3, 1.0)]:
        expected = pruning._prune_torch(rep, fraction, threshold, rep.shape[0], None)
        got = compiled.prune(rep, fraction, threshold, rep.shape[0], None)
        assert torch.equal(got[0], expected[0]) and torch.equal(got[1], expected[1])


def test_compiled_pruning_keeps_the_gradient_path() -> None:
    rep = torch.randn(8, 6, 2, dtype=torch.float64, requires_grad=True)
    pruned, _ = compiled.prune(rep, 0.5, None, 8, None)
    (grad,) = torch.autograd.grad(pruned.sum(), rep)
    assert torch.equal(grad.sum(-1) != 0, pruned.detach().abs().sum(-1) != 0)  # 1 where kept, 0 where pruned


def test_other_dtypes_take_the_torch_path() -> None:
    """numba has no bfloat16: such tensors run on the PyTorch tiles, close to the float32 result."""
    assert kernels.applies(torch.zeros(1)) and kernels.applies(torch.zeros(1, dtype=torch.float64))
    assert not kernels.applies(torch.zeros(1, dtype=torch.bfloat16))
    layer = ShapleyLayer([(0, 1), (2, 3)], 2, 3, hidden=(4,))
    x = torch.randn(5, 4, 2)
    expected = layer(x)
    got = layer.to(torch.bfloat16)(x.to(torch.bfloat16))
    assert got.dtype == torch.bfloat16
    assert (got.float() - expected).abs().max() <= 0.05 * expected.abs().max()


@pytest.mark.parametrize(
    ("prune", "residual", "dtype"),
    [
        (None, True, torch.float64),
        (Pruning(fraction=0.5, granularity="group"), True, torch.float64),
        (Pruning(fraction=0.5), True, torch.float64),
        # Threshold pruning of single features runs inside the layer kernels (no pruning pass): the first
        # layer's kernel prunes its fresh values, later ones prune the residual sum in place.
        (Pruning(threshold=0.3), True, torch.float64),
        (Pruning(threshold=0.3), True, torch.float32),
        (Pruning(threshold=(0.5, None, 0.2, 0.4)), True, torch.float64),
        (Pruning(threshold=0.3), False, torch.float64),
        (Pruning(fraction=0.25, threshold=0.3), True, torch.float64),
    ],
)
def test_residual_in_place_equals_the_copying_path(prune, residual, dtype) -> None:
    """Inference adds each layer's values to its input in place (and hands pruning its norms); collecting the
    layers takes the plain loop. Both must give the same explanation, and the user's input must stay
    untouched."""
    torch.manual_seed(2)
    model = DeepShapNet(16, 3, channels=6, hidden=(8,), prune=prune, residual=residual).to(dtype)
    x = torch.randn(20, 16, dtype=dtype)
    x_before = x.clone()
    with torch.no_grad():
        in_place = model.explain(x)
        copying = model.explain(x, layers=True)
    assert torch.equal(x, x_before)
    tolerance = 1e-12 if dtype == torch.float64 else 1e-5
    torch.testing.assert_close(in_place.values, copying.values, atol=tolerance, rtol=tolerance)
    assert in_place.skipped == copying.skipped
    if prune is not None and prune.threshold is not None:  # the thresholds must bite for this to test them
        model.prune = None
        with torch.no_grad():
            assert not torch.allclose(model.explain(x).values, in_place.values)
    with pytest.raises(RuntimeError, match="no_grad"):
        compiled.deep_layers_in_place(
            model.layers,
            torch.zeros(16, 20, 1, dtype=torch.float64),
            None,
            residual=True,
            pruning=None,
            n_real=16,
        )


@pytest.mark.parametrize(
    "prune",
    [
        Pruning(threshold=0.05),
        Pruning(threshold=(None, 0.1, 0.0, 0.2)),
        Pruning(fraction=0.0, threshold=0.05),
        Pruning(fraction=0.25, threshold=0.05),
        Pruning(fraction=0.5, granularity="group"),
    ],
)
@pytest.mark.parametrize("residual", [True, False])
def test_inference_paths_agree_with_padding_threads_and_a_reference(prune, residual) -> None:
    """The in-place inference path (the pruning fused into the kernels where it can be) against the
    layer-by-layer path, where the simple cases cannot tell: padding features (13 of 16), two thread ranges
    (700 rows), a first layer that adds its residual (channels 1, 2, 2) and a non-zero reference. A
    prediction stops before the last layer but must prune after the one before it, as the explanation does."""
    torch.manual_seed(3)
    model = DeepShapNet(
        13, 2, channels=[1, 2, 2], residual=residual, prune=prune, reference=torch.randn(13)
    ).double()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(3)  # large enough values that the thresholds bite
    x = torch.randn(700, 13, dtype=torch.float64)
    x[:, 2] = model.reference[2]  # features at the reference stay idle
    x[::2, 7] = model.reference[7]
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with torch.no_grad():
            fused = model.explain(x)
            layered = model.explain(x, layers=True)
            predicted = model(x)
    finally:
        torch.set_num_threads(before)
    torch.testing.assert_close(fused.values, layered.values, atol=1e-12, rtol=1e-12)
    assert fused.skipped_layers == layered.skipped_layers
    torch.testing.assert_close(predicted, fused.predictions, atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(model(x).detach(), fused.predictions, atol=1e-10, rtol=1e-10)  # autograd on
