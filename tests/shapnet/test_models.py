"""Shallow, Deep and Vision ShapNets against the brute-force oracle and the guarantees of DESIGN §3-6."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from shapnet import (
    DeepShapNet,
    Pruning,
    ShallowShapNet,
    ShapleyConv2d,
    ShapleyLayer,
    Stage,
    VisionShapNet,
    exact_shapley,
)
from shapnet.groups import butterfly_groups, padded_size


def _randomize(model: torch.nn.Module, seed: int, scale: float = 1.0) -> torch.nn.Module:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(scale * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    return model


def tiny_vision(**kwargs: object) -> VisionShapNet:
    stages = [Stage(4, hidden=(8,)), Stage(4, dilation=2, hidden=(8,), split=2)]
    return VisionShapNet(1, 3, stages=stages, image_size=(6, 6), readout_hidden=(8,), **kwargs)


# --------------------------------------------------------------------------------------------- shallow
group_specs = st.one_of(
    st.sampled_from(["gam", "pairs"]),
    st.tuples(st.just("disjoint"), st.integers(1, 4)),
    st.just("custom"),
)


@settings(max_examples=30, deadline=None)
@given(spec=group_specs, d=st.integers(2, 10), seed=st.integers(0, 10_000), data=st.data())
def test_shallow_shapnet_is_exact(spec: object, d: int, seed: int, data: st.DataObject) -> None:
    group_size = 2
    if isinstance(spec, tuple):
        spec, group_size = spec
    if spec == "custom":
        n_groups = data.draw(st.integers(1, 4))
        spec = [
            tuple(data.draw(st.lists(st.integers(0, d - 1), min_size=1, max_size=min(4, d), unique=True)))
            for _ in range(n_groups)
        ]
    model = _randomize(ShallowShapNet(d, 2, groups=spec, group_size=group_size, hidden=(8,)).double(), seed)
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(3, d, generator=gen, dtype=torch.float64)
    truth = exact_shapley(model, x, model.reference)
    assert (model.explain(x).values - truth).abs().max() <= 1e-9
    # Any baseline at explain time is exact too, shared or per sample.
    baseline = torch.randn(d, generator=gen, dtype=torch.float64)
    assert (model.explain(x, baseline=baseline).values - exact_shapley(model, x, baseline)).abs().max() <= 1e-9
    per_sample = torch.randn(3, d, generator=gen, dtype=torch.float64)
    got = model.explain(x, baseline=per_sample)
    want = torch.cat([exact_shapley(model, x[i : i + 1], per_sample[i]) for i in range(3)])
    assert (got.values - want).abs().max() <= 1e-9
    torch.testing.assert_close(got.base_values, model(per_sample))


@pytest.mark.parametrize("activation", ["relu", "gelu", "tanh", "softplus", "silu"])
@pytest.mark.parametrize("hidden", [(), (6,), (6, 5)])
def test_shallow_exact_for_every_inner_mlp(activation: str, hidden: tuple[int, ...]) -> None:
    model = ShallowShapNet(5, 3, groups="pairs", hidden=hidden, activation=activation).double()
    x = torch.randn(4, 5, dtype=torch.float64)
    assert (model.explain(x).values - exact_shapley(model, x, 0.0)).abs().max() <= 1e-9


def test_shallow_reference_is_used() -> None:
    ref = torch.linspace(-1, 1, 4, dtype=torch.float64)
    model = ShallowShapNet(4, 2, groups="disjoint", group_size=3, reference=ref).double()
    x = torch.randn(5, 4, dtype=torch.float64)
    ex = model.explain(x)
    assert (ex.values - exact_shapley(model, x, ref)).abs().max() <= 1e-9
    torch.testing.assert_close(ex.base_values, model(ref.unsqueeze(0)).expand(5, -1))
    torch.testing.assert_close(ex.predictions, model(x))


# ------------------------------------------------------------------------------------------- layers
def test_shared_shapley_layer_is_exact_for_its_sum() -> None:
    layer = ShapleyLayer([(0, 1), (1, 2), (2, 3)], 2, 3, hidden=(5,), shared=True).double()
    x = torch.randn(4, 4, 2, dtype=torch.float64)
    out = layer.shapley(x)
    assert out.values.shape == (4, 4, 3) and out.base.shape == (4, 3)

    def g(z: torch.Tensor) -> torch.Tensor:
        o = layer.shapley(z.view(-1, 4, 2))
        return o.base + o.values.sum(1)

    # Players are features (both channels together): play the game on a 0/1 mask over the 4 features.
    truth = torch.cat([
        exact_shapley(lambda m, b=b: g(m.unsqueeze(-1) * x[b]), torch.ones(1, 4, dtype=torch.float64), 0.0)
        for b in range(4)
    ])
    assert (out.values - truth).abs().max() <= 1e-9


def test_shapley_conv_is_exact_for_its_sum() -> None:
    conv = ShapleyConv2d(1, 2, 2, stride=1, padding=1, dilation=1, hidden=(4,)).double()
    x = torch.randn(2, 1, 3, 3, dtype=torch.float64)
    out = conv.shapley(x)
    assert out.values.shape == (2, 2, 3, 3)

    def g(z: torch.Tensor) -> torch.Tensor:
        o = conv.shapley(z.view(-1, 1, 3, 3))
        return o.base + o.values.sum((2, 3))

    truth = exact_shapley(g, x, 0.0)  # (B, 9, 2)
    assert (out.values.flatten(2).transpose(1, 2) - truth).abs().max() <= 1e-9


def test_layer_rejects_bad_groups_and_shapes() -> None:
    with pytest.raises(ValueError, match="repeat"):
        ShapleyLayer([(0, 0)], 1, 1)
    with pytest.raises(TypeError, match="non-empty"):
        ShapleyLayer([], 1, 1)
    with pytest.raises(ValueError, match=r"\(B, 3, 1\)"):
        ShapleyLayer([(0, 1, 2)], 1, 1)(torch.zeros(2, 4, 1))


# --------------------------------------------------------------------------------------------- deep
def test_butterfly_connects_every_input_to_every_output() -> None:
    for d, k in [(8, 2), (9, 3), (16, 4)]:
        n_padded, stages = padded_size(d, k)
        reach = torch.eye(n_padded, dtype=torch.bool)
        for s in range(stages):
            nxt = torch.zeros_like(reach)
            for g in butterfly_groups(n_padded, k, s):
                nxt[list(g)] = reach[list(g)].any(0)
            reach = nxt
        assert bool(reach.all())


@pytest.mark.parametrize("d,group_size,depth", [(8, 2, None), (5, 2, None), (7, 3, None), (8, 2, 6), (12, 4, 2)])
def test_deep_local_accuracy_and_missingness(d: int, group_size: int, depth: int | None) -> None:
    model = DeepShapNet(d, 3, channels=6, depth=depth, group_size=group_size, hidden=(16,))
    x = torch.randn(16, d)
    x[:, 1] = model.reference[1]  # feature 1 is missing
    ex = model.explain(x, layers=True)
    assert ex.values.shape == (16, d, 3)
    scale = ex.values.abs().sum((1, 2)).max().item() + 1.0
    local = ex.values.sum(1) - (model(x) - model(model.reference.unsqueeze(0)))
    assert local.abs().max() <= 1e-4 * scale
    for rep in ex.layers:
        assert rep.shape[:2] == (16, d)
        assert bool((rep[:, 1] == 0).all())


def test_deep_padding_features_never_appear() -> None:
    model = DeepShapNet(5, 2, channels=4, hidden=(8,))
    assert model.n_padded == 8
    ex = model.explain(torch.randn(3, 5), layers=True)
    assert all(rep.shape[1] == 5 for rep in ex.layers)
    torch.testing.assert_close(ex.values.sum(1), ex.predictions - ex.base_values)


def test_deep_reference_is_part_of_the_model() -> None:
    ref = torch.randn(6)
    model = DeepShapNet(6, 2, reference=ref)
    x = torch.randn(4, 6)
    torch.testing.assert_close(model.explain(x, baseline=ref).values, model.explain(x).values)
    with pytest.raises(ValueError, match="reference is part of the model"):
        model.explain(x, baseline=torch.zeros(6))


def test_deep_channels_per_stage() -> None:
    model = DeepShapNet(8, 2, channels=[4, 7], hidden=(8,))
    assert [layer.out_channels for layer in model.layers] == [4, 7, 2]
    with pytest.raises(ValueError, match="one entry per hidden stage"):
        DeepShapNet(8, 2, channels=[4])


@pytest.mark.parametrize(
    "prune",
    [0.5, Pruning(threshold=0.6), Pruning(fraction=(0.25, None, 0.5)), Pruning(fraction=0.5, granularity="group")],
)
def test_pruning_keeps_local_accuracy_and_skips_modules(prune: object) -> None:
    model = DeepShapNet(16, 3, channels=8, hidden=(16,), prune=prune)
    x = torch.randn(32, 16)
    ex = model.explain(x, layers=True)
    torch.testing.assert_close(ex.values.sum(1), ex.predictions - model(model.reference.unsqueeze(0)), atol=1e-4, rtol=1e-4)
    assert ex.skipped is not None and 0.0 < ex.skipped < 1.0
    fraction = model.pruning.for_layer(0)[0]
    if fraction:
        zeros = (ex.layers[0].abs().sum(-1) == 0).sum(1)
        assert bool((zeros >= int(fraction * 16)).all())
    if model.pruning.granularity == "group":
        # Whole groups of the next layer are zeroed, so the next layer skips half of its modules.
        groups = model.layers[1].groups
        idle = (ex.layers[0].abs().sum(-1).T[groups] == 0).all(1)  # (M, B)
        assert bool((idle.sum(0) >= groups.shape[0] // 2).all())


@pytest.mark.parametrize("granularity", ["feature", "group"])
def test_pruning_mask_names_exactly_the_nonzero_features(granularity: str) -> None:
    # The next layer trusts this mask for its dummy players, so it must be exact, zero rows included.
    from shapnet.pruning import prune_features, prune_features_and_mask

    torch.manual_seed(0)
    rep = torch.randn(8, 20, 3)
    rep[1] = 0.0  # already zero before pruning (pruned by an earlier layer)
    rep[5, :7] = 0.0
    rep[7] = 0.0  # padding (n_real=7): always 0
    groups = torch.tensor([[0, 4], [1, 5], [2, 6], [3, 7]]) if granularity == "group" else None
    pruned, active = prune_features_and_mask(rep, 0.5, None, n_real=7, groups=groups)
    assert torch.equal(active, pruned.abs().sum(-1) != 0)
    assert torch.equal(pruned, prune_features(rep, 0.5, None, n_real=7, groups=groups))
    assert bool((active.sum(0) <= 7 - 3).all())  # half of the units pruned (3 of 7 features, or 2 of 4 groups)


def test_sparse_path_equals_dense_path() -> None:
    dense = DeepShapNet(8, 2, channels=5, hidden=(8,)).double()
    sparse = DeepShapNet(8, 2, channels=5, hidden=(8,), prune=0.0).double()
    sparse.load_state_dict(dense.state_dict())
    x = torch.randn(6, 8, dtype=torch.float64)
    x[:3, :4] = 0.0
    assert (sparse.explain(x).values - dense.explain(x).values).abs().max() <= 1e-12


@pytest.mark.parametrize(
    "make",
    [
        lambda: DeepShapNet(8, 3, channels=5, hidden=(6,), reference=torch.randn(8)),
        lambda: DeepShapNet(5, 4, channels=4, hidden=(6,)),  # padded; residual into the last layer (4 == 4)
        lambda: DeepShapNet(9, 2, channels=4, group_size=3, hidden=(5, 4), activation="gelu"),
        lambda: DeepShapNet(4, 2, depth=1, hidden=(), reference=torch.randn(4)),
        lambda: DeepShapNet(16, 3, channels=6, hidden=(8,), prune=Pruning(fraction=0.5, granularity="group")),
        lambda: ShallowShapNet(6, 3, groups="pairs", hidden=(5,), reference=torch.randn(6)),
        lambda: ShallowShapNet(7, 2, groups="disjoint", group_size=3, hidden=()),
    ],
)
def test_forward_by_efficiency_equals_the_explained_prediction(make: object) -> None:
    # forward() skips the last layer's values (sum_i Phi_i = sum_m f_m(x) - f_m(r)); explain() computes
    # them. Both must give the same logits and the same parameter gradients.
    torch.manual_seed(0)
    model = make().double()
    x = torch.randn(10, model.input_shape[0], dtype=torch.float64)
    x[:2] = model.reference  # rows at the reference: the logits are exactly the bias (or base)
    logits = model(x)
    explanation = model.explain(x)
    explained = explanation.predictions
    torch.testing.assert_close(logits, explained, atol=1e-12, rtol=1e-12)
    assert torch.equal(logits[:2], explanation.base_values[:2])
    params = [p for p in model.parameters() if p.requires_grad]
    weights = torch.randn_like(logits)
    by_forward = torch.autograd.grad((logits * weights).sum(), params, allow_unused=True)
    by_explain = torch.autograd.grad((explained * weights).sum(), params, allow_unused=True)
    for a, b in zip(by_forward, by_explain):
        torch.testing.assert_close(a if a is not None else torch.zeros_like(b), b, atol=1e-10, rtol=1e-10)


def test_deep_gradients_match_finite_differences() -> None:
    model = DeepShapNet(6, 2, channels=3, hidden=(4,)).double()
    x = torch.randn(3, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(model, (x,))
    for name, param in model.named_parameters():
        fn = lambda w, name=name: torch.func.functional_call(model, {name: w}, (x.detach(),))  # noqa: E731
        assert torch.autograd.gradcheck(fn, (param.detach().clone().requires_grad_(),)), name


# ------------------------------------------------------------------------------------------- vision
def test_vision_local_accuracy_missingness_and_per_element() -> None:
    model = tiny_vision()
    x = torch.randn(4, 1, 6, 6)
    x[:, :, :2] = 0.0  # top rows at the reference
    ex = model.explain(x, layers=True)
    assert ex.values.shape == (4, 6, 6, 3)
    scale = ex.values.abs().sum((1, 2, 3)).max().item() + 1.0
    local = ex.values.sum((1, 2)) - (model(x) - model(torch.zeros(1, 1, 6, 6)))
    assert local.abs().max() <= 1e-4 * scale
    for rep in ex.layers:
        assert bool((rep[:, :2] == 0).all())
    per = ex.per_element()
    assert per.shape == (4, 1, 6, 6, 3)
    torch.testing.assert_close(per.sum((1, 2, 3)), ex.predictions - ex.base_values, atol=1e-4, rtol=1e-4)


def test_vision_per_element_splits_pixels_over_channels() -> None:
    model = VisionShapNet(3, 2, stages=[Stage(4, hidden=(4,), stride=2, padding=1)], image_size=5, readout_hidden=(4,))
    ex = model.explain(torch.randn(2, 3, 5, 5))
    per = ex.per_element()
    assert per.shape == (2, 3, 5, 5, 2)
    torch.testing.assert_close(per[:, 0], ex.values / 3)
    torch.testing.assert_close(per.sum(1), ex.values)


def test_vision_reference_and_pruning() -> None:
    ref = torch.full((1, 6, 6), 0.5)
    model = tiny_vision(reference=ref, prune=0.5)
    x = torch.randn(3, 1, 6, 6)
    ex = model.explain(x)
    torch.testing.assert_close(ex.values.sum((1, 2)), model(x) - model(ref.unsqueeze(0)), atol=1e-4, rtol=1e-4)
    assert 0.0 < ex.skipped < 1.0
    with pytest.raises(ValueError, match="reference is part of the model"):
        model.explain(x, baseline=torch.zeros(1, 6, 6))


def test_default_vision_shapnet_is_mnist_sized() -> None:
    model = VisionShapNet(1, 10)
    assert model.input_shape == (1, 28, 28)
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)


# --------------------------------------------------------------------------------------- bad inputs
@pytest.mark.parametrize("make", [lambda: ShallowShapNet(4, 2), lambda: DeepShapNet(4, 2)])
def test_bad_tabular_inputs(make: object) -> None:
    model = make()
    with pytest.raises(ValueError, match="expected 4, got 5"):
        model(torch.zeros(2, 5))
    with pytest.raises(ValueError, match=r"rank 2.*got rank 1"):
        model(torch.zeros(4))
    with pytest.raises(ValueError, match="NaN or inf"):
        model(torch.tensor([[0.0, float("nan"), 0.0, 0.0]]))
    with pytest.raises(ValueError, match="NaN or inf"):
        model.explain(torch.tensor([[0.0, float("inf"), 0.0, 0.0]]))
    with pytest.raises(TypeError, match=r"floating-point.*torch.int64"):
        model(torch.zeros(2, 4, dtype=torch.long))
    with pytest.raises(TypeError, match="torch.Tensor.*ndarray"):
        model(torch.zeros(2, 4).numpy())


def test_bad_image_inputs() -> None:
    model = tiny_vision()
    with pytest.raises(ValueError, match=r"expected \(1, 6, 6\), got \(1, 5, 6\)"):
        model(torch.zeros(2, 1, 5, 6))


@pytest.mark.parametrize(
    "make",
    [
        lambda: ShallowShapNet(4, 2, reference=torch.zeros(3)),
        lambda: DeepShapNet(4, 2, reference=[0.0, 1.0]),
        lambda: VisionShapNet(1, 2, reference=torch.zeros(2, 28, 28)),
    ],
)
def test_reference_of_wrong_shape(make: object) -> None:
    with pytest.raises(ValueError, match="reference must have shape"):
        make()


def test_bad_constructor_arguments() -> None:
    with pytest.raises(ValueError, match="groups must be one of"):
        ShallowShapNet(4, 2, groups="triples")
    with pytest.raises(ValueError, match="activation must be one of"):
        DeepShapNet(4, 2, activation="sigmoidish")
    with pytest.raises(ValueError, match="n_features == 0, must be >= 1"):
        DeepShapNet(0, 2)
    with pytest.raises(ValueError, match="fraction must lie in"):
        DeepShapNet(4, 2, prune=1.5)


# ------------------------------------------------------------------------------------------ general
def test_models_are_dtype_agnostic_and_repr_informative() -> None:
    for model in (ShallowShapNet(4, 2), DeepShapNet(4, 2), tiny_vision()):
        x = torch.randn(2, *model.input_shape)
        out32 = model(x)
        out64 = model.double()(x.double())
        torch.testing.assert_close(out64.float(), out32, atol=1e-4, rtol=1e-4)
        assert "n_modules" in repr(model) or "kernel_size" in repr(model)


def test_explanation_slicing() -> None:
    ex = DeepShapNet(4, 2).explain(torch.randn(5, 4), layers=True)
    part = ex[1:3]
    assert len(part) == 2 and part.values.shape == (2, 4, 2) and len(part.layers) == len(ex.layers)
    assert ex[0].predictions.shape == (1, 2)
