"""Bad input at the public entry points (issue #18 items 2-6): empty batches, dtypes, complex numbers,
non-finite references, damaged checkpoints and constructor arguments. Every case failed before the fix
(a reshape RuntimeError, torch's "expected scalar type", a silent NaN model, a ZeroDivisionError...)."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

import shapnet
from shapnet import (
    DeepShapNet,
    ShallowShapNet,
    ShapleyConv2d,
    ShapleyLayer,
    Stage,
    VisionShapNet,
    exact_shapley,
    shapley_consistency,
)
from shapnet._backends import compiled
from shapnet.io import load_checkpoint

MODELS = {
    "deep": lambda: DeepShapNet(6, 3, channels=4, hidden=(5,)),
    "deep-gelu": lambda: DeepShapNet(6, 3, channels=4, hidden=(5,), activation="gelu"),
    "deep-pruned": lambda: DeepShapNet(8, 2, channels=4, hidden=(5,), prune=0.5),
    "shallow": lambda: ShallowShapNet(6, 3, hidden=(5,)),
    "harsanyi": lambda: shapnet.HarsanyiNet(6, 3, hidden=(8, 8)),
    "vision": lambda: VisionShapNet(
        2, 3, stages=[Stage(3, hidden=(4,)), Stage(3, dilation=2, hidden=(4,))], image_size=(5, 6), readout_hidden=(4,)
    ),
}


@pytest.fixture(params=["compiled", "torch"])
def path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run the test on the compiled kernels and on the PyTorch tiles."""
    if request.param == "torch":
        monkeypatch.setattr(compiled, "applies", lambda tensor: False)
    return request.param


# ------------------------------------------------------------------------------------ 2. empty batch
@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("grad", [True, False])
def test_empty_batch_gives_empty_results_of_the_right_shape(name: str, grad: bool, path: str) -> None:
    model = MODELS[name]()
    full = model.explain(torch.randn(3, *model.input_shape), layers=True)
    with torch.set_grad_enabled(grad):
        empty = torch.randn(0, *model.input_shape)
        logits = model(empty)
        ex = model.explain(empty, layers=True)
    assert logits.shape == (0, model.n_outputs)
    assert ex.values.shape == (0, *full.values.shape[1:])
    assert ex.base_values.shape == ex.predictions.shape == (0, model.n_outputs)
    assert [t.shape[1:] for t in ex.layers] == [t.shape[1:] for t in full.layers]
    assert all(t.shape[0] == 0 for t in ex.layers)
    assert ex.per_element().shape == (0, *model.input_shape, model.n_outputs)
    assert len(ex) == 0 and ex.efficiency_error().shape == (0, model.n_outputs)


def test_empty_batch_with_a_per_row_baseline() -> None:
    model = ShallowShapNet(4, 2, hidden=(3,))
    ex = model.explain(torch.randn(0, 4), baseline=torch.randn(0, 4))
    assert ex.values.shape == (0, 4, 2)


def test_empty_batch_through_the_layers(path: str) -> None:
    layer = ShapleyLayer([(0, 1), (2, 3)], 2, 3, hidden=(4,))
    assert layer(torch.randn(0, 4, 2)).shape == (0, 4, 3)
    out = layer.shapley(torch.randn(0, 4, 2))
    assert out.values.shape == (0, 4, 3) and out.base.shape == (0, 3)
    conv = ShapleyConv2d(2, 3, 2, hidden=(4,))
    assert conv(torch.randn(0, 2, 5, 5)).shape == (0, 3, 5, 5)
    out = conv.shapley(torch.randn(0, 2, 5, 5))
    assert out.values.shape == (0, 3, 5, 5) and out.base.shape == (0, 3)


@pytest.mark.parametrize("reference", [0.0, torch.ones(4), torch.ones(1, 4)])
def test_exact_shapley_of_an_empty_batch(reference: object) -> None:
    seen = []

    def fn(z: torch.Tensor) -> torch.Tensor:
        seen.append(z.clone())
        return torch.stack([z.sum(1), z.prod(1)], 1)

    values = exact_shapley(fn, torch.randn(0, 4), reference)
    assert values.shape == (0, 4, 2)
    assert seen and seen[0].shape == (1, 4)  # one call on the reference, only to learn O


# ------------------------------------------------------------------------------------- 3. dtype
@pytest.mark.parametrize("name", ["deep", "shallow", "vision"])
@pytest.mark.parametrize("given", [torch.float64, torch.float16, torch.bfloat16])
def test_a_mismatched_float_dtype_is_refused_naming_both_dtypes_and_the_fix(name: str, given: torch.dtype) -> None:
    model = MODELS[name]()
    x = torch.randn(2, *model.input_shape).to(given)
    for call in (model, model.explain):
        with pytest.raises(TypeError, match=rf"{given}.*torch.float32.*x\.to\(torch\.float32\).*model\.to\({given}\)"):
            call(x)


def test_a_float64_model_takes_float64_and_refuses_float32() -> None:
    model = DeepShapNet(6, 3, channels=4, hidden=(5,)).double()
    x = torch.randn(2, 6, dtype=torch.float64)
    assert model(x).dtype == torch.float64 and model.explain(x).values.dtype == torch.float64
    with pytest.raises(TypeError, match=r"torch.float32 but the model's parameters are torch.float64"):
        model(x.float())


def test_input_on_another_device_is_refused() -> None:
    model = DeepShapNet(6, 3, channels=4, hidden=(5,))
    with pytest.raises(ValueError, match="is on device meta but the model is on cpu"):
        model(torch.empty(2, 6, device="meta"))


@pytest.mark.parametrize("name", ["deep", "shallow", "vision"])
def test_complex_input_is_refused_by_the_models(name: str) -> None:
    model = MODELS[name]()
    x = torch.randn(2, *model.input_shape, dtype=torch.complex64)
    for call in (model, model.explain):
        with pytest.raises(TypeError, match="complex numbers are not supported"):
            call(x)
    with pytest.raises(TypeError, match="baseline must be real"):
        model.explain(x.real, baseline=model.reference.to(torch.complex64))


def test_complex_input_is_refused_by_the_adapters() -> None:
    from shapnet_adapters.captum import ShapNetAttribution
    from shapnet_adapters.quantus import explain_func
    from shapnet_adapters.shap import ShapNetExplainer

    model = MODELS["deep"]()
    x = torch.randn(2, 6, dtype=torch.complex64)
    targets = np.array([0, 1])
    for inputs in (x, x.numpy()):
        with pytest.raises(TypeError, match="real numbers"):
            explain_func(model, inputs, targets)
        with pytest.raises(TypeError, match="real numbers"):
            ShapNetExplainer(model)(inputs)
    with pytest.raises(TypeError, match="complex"):
        ShapNetAttribution(model).attribute(x, target=0)


def test_complex_reference_is_refused() -> None:
    with pytest.raises(TypeError, match="reference must be real"):
        DeepShapNet(4, 2, reference=torch.ones(4, dtype=torch.complex64))
    with pytest.raises(TypeError, match="reference must be real"):
        exact_shapley(lambda z: z.sum(1), torch.randn(2, 4), 1j)


# ------------------------------------------------------------------------------- 4. NaN/inf reference
@pytest.mark.parametrize(
    "make",
    [
        lambda bad: DeepShapNet(4, 2, reference=bad),
        lambda bad: DeepShapNet(4, 2, reference=[0.0, bad, 0.0, 0.0]),
        lambda bad: ShallowShapNet(4, 2, reference=bad),
        lambda bad: ShallowShapNet(4, 2, reference=np.array([0.0, 0.0, bad, 0.0])),
        lambda bad: VisionShapNet(2, 2, stages=[Stage(2, hidden=(3,))], image_size=4, reference=[0.0, bad]),
        lambda bad: VisionShapNet(1, 2, stages=[Stage(2, hidden=(3,))], image_size=4, reference=bad),
        lambda bad: exact_shapley(lambda z: z.sum(1), torch.randn(2, 4), bad),
    ],
)
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_reference_is_refused(make: object, bad: float) -> None:
    with pytest.raises(ValueError, match="reference must be finite"):
        make(bad)


def test_loaded_checkpoint_with_a_non_finite_reference_is_refused(tmp_path: object) -> None:
    path = tmp_path / "m.pt"
    shapnet.save(DeepShapNet(4, 2, channels=2, hidden=(3,)), path)
    payload = load_checkpoint(path)
    payload["state_dict"]["reference"][1] = float("nan")
    torch.save(payload, path)
    with pytest.raises(ValueError, match=r"m\.pt.*reference contains NaN"):
        shapnet.load(path)


# -------------------------------------------------------------------------------------- 5. checkpoints
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_checkpoint_keeps_the_dtype(dtype: torch.dtype, tmp_path: object) -> None:
    model = DeepShapNet(5, 2, channels=3, hidden=(4,), reference=torch.randn(5)).to(dtype)
    path = tmp_path / "m.pt"
    shapnet.save(model, path)
    loaded = shapnet.load(path)
    assert {p.dtype for p in loaded.parameters()} == {dtype} and loaded.reference.dtype == dtype
    x = torch.randn(3, 5, dtype=dtype) * 1e-3  # small inputs: a float32 round trip would change the values
    assert torch.equal(loaded(x), model(x))


def _edited(tmp_path: object, edit: object) -> object:
    path = tmp_path / "edited.pt"
    shapnet.save(DeepShapNet(4, 2, channels=3, hidden=(4,)), path)
    payload = load_checkpoint(path)
    edit(payload)
    torch.save(payload, path)
    return path


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda p: p.update(version=99), r"version 99.*newer shapnet"),
        (lambda p: p.update(version="1"), r"version '1'"),
        (lambda p: p.update(version=0), r"version 0"),
        (lambda p: p["config"].update(colour="red"), r"config does not build a DeepShapNet.*colour"),
        (lambda p: p["config"].update(channels=[5]), r"weights do not fit a DeepShapNet.*size mismatch"),
        (lambda p: p["config"].update(n_features="four"), r"config does not build a DeepShapNet.*n_features"),
        (lambda p: p["config"].pop("n_outputs"), r"config does not build a DeepShapNet.*n_outputs"),
        (lambda p: p["state_dict"].pop("bias"), r"weights do not fit.*Missing key"),
        (lambda p: p["state_dict"].update(extra_weight=torch.ones(2)), r"weights do not fit.*Unexpected key"),
        (lambda p: p.update(config=[1, 2]), r"damaged.*'config'"),
        (lambda p: p.update(state_dict=None), r"damaged.*'state_dict'"),
    ],
)
def test_edited_checkpoints_give_a_value_error_naming_the_file(tmp_path: object, edit: object, match: str) -> None:
    path = _edited(tmp_path, edit)
    with pytest.raises(ValueError, match=r"edited\.pt") as info:
        shapnet.load(path)
    assert re.search(match, str(info.value), re.S), str(info.value)


@pytest.mark.parametrize(
    ("extra", "where"),
    [
        ({"o": object()}, r"extra\['o'\] is a builtins.object"),
        ({"a": [1.0, np.float64(2.0)]}, r"extra\['a'\]\[1\] is a numpy.float64.*\.item\(\)"),
        ({"arr": np.zeros(3)}, r"extra\['arr'\] is a numpy.ndarray"),
        ({"r": range(3)}, r"extra\['r'\] is a builtins.range"),
    ],
)
def test_save_refuses_extras_that_load_could_not_read(tmp_path: object, extra: dict, where: str) -> None:
    path = tmp_path / "m.pt"
    with pytest.raises(ValueError, match=where):
        shapnet.save(DeepShapNet(4, 2, channels=2, hidden=(3,)), path, extra=extra)
    assert not path.exists() and not (tmp_path / "m.pt.tmp").exists()


def test_save_keeps_every_plain_extra(tmp_path: object) -> None:
    extra = {
        "epoch": 3, "lr": 1e-3, "name": "x", "ok": True, "none": None, "blob": b"\x00", "z": 1j,
        "nested": {1: [1, 2, (3, "a")], "t": torch.arange(3), "s": {1, 2}}, "dtype": torch.float64,
    }
    path = tmp_path / "m.pt"
    shapnet.save(DeepShapNet(4, 2, channels=2, hidden=(3,)), path, extra=extra)
    loaded = load_checkpoint(path)["extra"]
    assert torch.equal(loaded["nested"].pop("t"), extra["nested"].pop("t"))
    assert loaded == extra


# ------------------------------------------------------------------------------- 6. constructor checks
@pytest.mark.parametrize(
    ("build", "error", "match"),
    [
        (lambda: DeepShapNet(4, 2, channels=0), ValueError, r"channels == 0, must be >= 1"),
        (lambda: DeepShapNet(4, 2, channels=[3, 0], depth=3), ValueError, r"channels\[1\] == 0, must be >= 1"),
        (lambda: DeepShapNet(4, 2, channels=2.5), TypeError, r"channels must be an instance of int, not float"),
        (lambda: DeepShapNet(4, 2, group_size=0), ValueError, r"group_size == 0, must be >= 2"),
        (lambda: DeepShapNet(4, 2, hidden=(0,)), ValueError, r"hidden\[0\] == 0, must be >= 1"),
        (lambda: DeepShapNet(4, 2, hidden=8), TypeError, r"hidden must be a sequence"),
        (lambda: DeepShapNet(4, 2, depth=0), ValueError, r"depth == 0, must be >= 1"),
        (lambda: DeepShapNet(True, 2), TypeError, r"n_features must be an int, got a bool"),
        (lambda: ShallowShapNet(4, 2, groups="disjoint", group_size=0), ValueError, r"group_size == 0"),
        (lambda: ShallowShapNet(4, 2, groups=[[0, 1.5]]), TypeError, r"group \(0, 1.5\): index must be an instance of int"),
        (lambda: ShallowShapNet(4, 2, groups=[[0, -1]]), ValueError, r"index == -1, must be >= 0"),
        (lambda: ShallowShapNet(4, 2, groups=[[0, 4]]), ValueError, r"outside \[0, 4\)"),
        (lambda: Stage(0), ValueError, r"Stage.out_channels == 0, must be >= 1"),
        (lambda: Stage(4, stride=0), ValueError, r"Stage.stride == 0, must be >= 1"),
        (lambda: Stage(4, dilation=0), ValueError, r"Stage.dilation == 0, must be >= 1"),
        (lambda: Stage(4, kernel_size=(2, 0)), ValueError, r"Stage.kernel_size\[1\] == 0, must be >= 1"),
        (lambda: Stage(4, padding=-1), ValueError, r"Stage.padding == -1, must be >= 0"),
        (lambda: Stage(4, hidden=(8, 0)), ValueError, r"Stage.hidden\[1\] == 0"),
        (lambda: Stage(4, split=0), ValueError, r"Stage.split == 0, must be >= 1"),
        (lambda: VisionShapNet(1, 2, stages=[{"out_channels": 0}]), ValueError, r"Stage.out_channels == 0"),
        (lambda: VisionShapNet(1, 2, image_size=0), ValueError, r"image_size == 0, must be >= 1"),
        (lambda: VisionShapNet(1, 2, image_size=(8, 0)), ValueError, r"image_size\[1\] == 0, must be >= 1"),
        (lambda: VisionShapNet(1, 2, image_size=(8, 8, 8)), ValueError, r"image_size must be an int or a pair"),
        (lambda: VisionShapNet(1, 2, stages=Stage(4)), TypeError, r"stages must be a sequence of Stage"),
        (lambda: VisionShapNet(1, 2, stages=[4]), TypeError, r"stages\[0\] must be a Stage"),
        (lambda: ShapleyConv2d(2, 3, 2, stride=0), ValueError, r"stride == 0, must be >= 1"),
        (lambda: ShapleyConv2d(0, 3, 2), ValueError, r"in_channels == 0, must be >= 1"),
        (lambda: ShapleyLayer([(0, 1)], 2, 0), ValueError, r"out_channels == 0, must be >= 1"),
        (lambda: exact_shapley(lambda z: z.sum(1), torch.randn(2, 3), 0.0, chunk_size=0), ValueError,
         r"chunk_size == 0, must be >= 1"),
        (lambda: exact_shapley(lambda z: z.sum(1), torch.randn(2, 3), 0.0, chunk_size=-1), ValueError,
         r"chunk_size == -1, must be >= 1"),
        (lambda: exact_shapley(lambda z: z.sum(1), torch.randn(2, 3), 0.0, chunk_size=2.0), TypeError,
         r"chunk_size must be an instance of int"),
    ],
)
def test_constructor_arguments_are_checked(build: object, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        build()


def test_exact_shapley_is_the_same_for_every_chunk_size() -> None:
    x = torch.randn(3, 4, dtype=torch.float64)
    fn = lambda z: z.prod(1) + z[:, 0] * z[:, 1]  # noqa: E731
    reference = exact_shapley(fn, x, 0.5)
    for chunk in (1, 3, 16, 100):
        torch.testing.assert_close(exact_shapley(fn, x, 0.5, chunk_size=chunk), reference, rtol=0, atol=1e-12)


def test_huge_targets_give_a_value_error() -> None:
    from shapnet_adapters.captum import ShapNetAttribution

    model = MODELS["deep"]()
    x = torch.randn(2, 6)
    values = model.explain(x).values
    for target in (2**70, -(2**70), np.int64(3)):
        with pytest.raises(ValueError, match="target"):
            shapley_consistency(model, x, values, target=target)
        with pytest.raises(ValueError, match="target"):
            ShapNetAttribution(model).attribute(x, target=target)
    # a NumPy integer in range is an ordinary target
    torch.testing.assert_close(
        shapley_consistency(model, x, values, target=np.int64(1), generator=torch.Generator().manual_seed(0)),
        shapley_consistency(model, x, values, target=1, generator=torch.Generator().manual_seed(0)),
    )
