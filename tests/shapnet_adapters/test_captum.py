"""ShapNetAttribution against model.explain, Captum's target forms, baselines, NoiseTunnel and metrics."""

from __future__ import annotations

import pytest
import torch
from captum.attr import Attribution, NoiseTunnel
from captum.metrics import infidelity, sensitivity_max

from shapnet import Stage, VisionShapNet, exact_shapley
from shapnet_adapters import ShapNetAttribution

B = 4


def expected(model, x, rows, baseline=None) -> torch.Tensor:
    """``(B, *input_shape)``: the model's own per-element values, output ``rows[b]`` for row ``b``."""
    with torch.no_grad():
        per_element = model.explain(x, baseline=baseline).per_element()  # (B, *in, K)
    return torch.stack([per_element[b, ..., int(k)] for b, k in enumerate(rows)])


def relative_delta(model, x, delta, rows) -> float:
    with torch.no_grad():
        scale = model(x)[torch.arange(len(rows)), torch.as_tensor(rows)].abs().clamp_min(1.0)
    return float((delta.abs() / scale.double()).max())


def test_is_a_captum_attribution(shallow) -> None:
    attribution = ShapNetAttribution(shallow)
    assert isinstance(attribution, Attribution)
    assert attribution.forward_func is shallow
    assert attribution.has_convergence_delta()
    assert attribution.multiplies_by_inputs
    assert hasattr(attribution.attribute, "__wrapped__")  # log_usage decoration, needed by NoiseTunnel


def test_values_equal_model_explain(model) -> None:
    x = torch.randn(B, *model.input_shape)
    attr = ShapNetAttribution(model).attribute(x, target=1)
    assert attr.shape == x.shape
    torch.testing.assert_close(attr, expected(model, x, [1] * B))
    assert not attr.requires_grad


@pytest.mark.parametrize(
    ("target", "rows"),
    [
        (2, [2, 2, 2, 2]),
        (-1, [2, 2, 2, 2]),
        ((1,), [1, 1, 1, 1]),
        ([0, 1, 2, 1], [0, 1, 2, 1]),
        (torch.tensor([2, 0, 1, 0]), [2, 0, 1, 0]),
        (torch.tensor(1), [1, 1, 1, 1]),
        ([(1,), (0,), (2,), (2,)], [1, 0, 2, 2]),
    ],
    ids=["int", "negative-int", "tuple", "list-of-ints", "tensor-per-row", "scalar-tensor", "list-of-tuples"],
)
def test_every_target_form(model, target, rows) -> None:
    x = torch.randn(B, *model.input_shape)
    attr, delta = ShapNetAttribution(model).attribute(x, target=target, return_convergence_delta=True)
    torch.testing.assert_close(attr, expected(model, x, rows))
    assert delta.shape == (B,) and delta.dtype == torch.float64
    assert relative_delta(model, x, delta, rows) <= 1e-5


def test_tuple_in_tuple_out(model) -> None:
    x = torch.randn(B, *model.input_shape)
    attribution = ShapNetAttribution(model)
    out = attribution.attribute((x,), target=0)
    assert isinstance(out, tuple) and len(out) == 1
    torch.testing.assert_close(out[0], attribution.attribute(x, target=0))
    (attr,), delta = attribution.attribute((x,), baselines=(model.reference.unsqueeze(0),), target=0,
                                           return_convergence_delta=True)
    torch.testing.assert_close(attr, out[0])
    assert relative_delta(model, x, delta, [0] * B) <= 1e-5
    with pytest.raises(ValueError, match="1-tuple"):
        attribution.attribute((x, x), target=0)


def test_a_tuple_target_is_one_index(model) -> None:
    """Captum reads a tuple target as an index into the output's trailing dimensions: one output for every
    row. A tuple holding one index per row is refused rather than read as a per-row target."""
    x = torch.randn(B, *model.input_shape)
    attribution = ShapNetAttribution(model)
    torch.testing.assert_close(
        attribution.attribute(x, target=(torch.tensor(1),)), attribution.attribute(x, target=1)
    )
    with pytest.raises(TypeError, match="a tuple target holds one output index"):
        attribution.attribute(x, target=(torch.arange(B) % 2,))


def test_image_attributions_split_pixels_over_channels() -> None:
    model = VisionShapNet(2, 3, stages=[Stage(4, hidden=(8,))], image_size=(4, 4), readout_hidden=(8,)).eval()
    x = torch.randn(B, 2, 4, 4)
    attr = ShapNetAttribution(model).attribute(x, target=2)
    assert attr.shape == (B, 2, 4, 4)
    torch.testing.assert_close(attr[:, 0], attr[:, 1])  # each pixel's value split equally
    with torch.no_grad():
        per_pixel = model.explain(x).values[..., 2]  # (B, H, W)
    torch.testing.assert_close(attr.sum(1), per_pixel)


@pytest.mark.parametrize("shape", ["scalar", "(F,)", "(1, F)", "(B, F)"])
def test_shallow_is_exact_for_any_baseline(shallow, shape) -> None:
    x = torch.randn(B, 5, dtype=torch.float64)
    model = shallow.double()
    baseline = {
        "scalar": 0.3,
        "(F,)": torch.randn(5, dtype=torch.float64),
        "(1, F)": torch.randn(1, 5, dtype=torch.float64),
        "(B, F)": torch.randn(B, 5, dtype=torch.float64),
    }[shape]
    attr, delta = ShapNetAttribution(model).attribute(
        x, baselines=baseline, target=[0, 1, 2, 0], return_convergence_delta=True
    )
    truth = exact_shapley(model, x, torch.as_tensor(baseline, dtype=torch.float64))  # (B, F, K)
    torch.testing.assert_close(attr, truth[torch.arange(B), :, torch.tensor([0, 1, 2, 0])])
    assert float(delta.abs().max()) <= 1e-10
    # The baseline matters: against the reference the values differ.
    assert not torch.allclose(attr, ShapNetAttribution(model).attribute(x, target=[0, 1, 2, 0]))


@pytest.mark.parametrize("kind", ["deep", "vision"])
def test_deep_models_accept_only_their_reference(make_model, kind) -> None:
    model = make_model(kind)
    x = torch.randn(B, *model.input_shape)
    attribution = ShapNetAttribution(model)
    own = attribution.attribute(x, target=1)
    torch.testing.assert_close(attribution.attribute(x, baselines=model.reference.unsqueeze(0), target=1), own)
    torch.testing.assert_close(attribution.attribute(x, baselines=model.reference.expand_as(x), target=1), own)
    with pytest.raises(ValueError, match="cannot explain against a baseline other than its own reference"):
        attribution.attribute(x, baselines=torch.zeros_like(x), target=1)
    with pytest.raises(ValueError, match="cannot explain against a baseline"):
        attribution.attribute(x, baselines=-1.0, target=1)


def test_target_none(make_model) -> None:
    multi = make_model("shallow")
    x = torch.randn(B, 5)
    with pytest.raises(ValueError, match="target=None is ambiguous"):
        ShapNetAttribution(multi).attribute(x)
    single = make_model("shallow", n_outputs=1)
    attr, delta = ShapNetAttribution(single).attribute(x, return_convergence_delta=True)
    torch.testing.assert_close(attr, expected(single, x, [0] * B))
    assert relative_delta(single, x, delta, [0] * B) <= 1e-5


@pytest.mark.parametrize(
    ("target", "error", "match"),
    [
        (3, ValueError, r"must lie in \[-3, 2\]"),
        ([0, 1], ValueError, "one entry per row"),
        ((0, 1), ValueError, "one element"),
        (torch.tensor([[0, 1], [1, 0]]), ValueError, "one index per row"),
        (torch.tensor([0.0, 1.0, 0.0, 1.0]), TypeError, "integer indices"),
        (1.5, TypeError, "must be an int"),
        (True, TypeError, "bool"),
        ([0, 1, 2, 0.5], TypeError, "must be an int"),
    ],
)
def test_bad_targets(shallow, target, error, match) -> None:
    with pytest.raises(error, match=match):
        ShapNetAttribution(shallow).attribute(torch.randn(B, 5), target=target)


def test_bad_arguments(shallow) -> None:
    with pytest.raises(TypeError, match="needs a ShapNet"):
        ShapNetAttribution(torch.nn.Linear(5, 3))
    with pytest.raises(ValueError, match="additional_forward_args"):
        ShapNetAttribution(shallow).attribute(torch.randn(B, 5), target=0, additional_forward_args=(1,))
    with pytest.raises(ValueError, match="wrong number of features"):  # the core's input check
        ShapNetAttribution(shallow).attribute(torch.randn(B, 4), target=0)


@pytest.mark.parametrize("nt_type", ["smoothgrad", "smoothgrad_sq", "vargrad"])
def test_noise_tunnel(model, nt_type) -> None:
    x = torch.randn(B, *model.input_shape)
    tunnel = NoiseTunnel(ShapNetAttribution(model))
    noisy, delta = tunnel.attribute(
        x, nt_type=nt_type, nt_samples=3, stdevs=0.2, target=[0, 1, 2, 0], return_convergence_delta=True
    )
    assert noisy.shape == x.shape and bool(torch.isfinite(noisy).all())
    assert delta.shape == (3 * B,) and float(delta.abs().max()) <= 1e-4
    # Without noise the tunnel reduces to the attribution itself: mean a, mean a**2, variance 0.
    plain = ShapNetAttribution(model).attribute(x, target=[0, 1, 2, 0])
    quiet = tunnel.attribute(x, nt_type=nt_type, nt_samples=2, stdevs=1e-12, target=[0, 1, 2, 0])
    want = {"smoothgrad": plain, "smoothgrad_sq": plain**2, "vargrad": torch.zeros_like(plain)}[nt_type]
    torch.testing.assert_close(quiet, want, atol=1e-6, rtol=1e-4)


def test_infidelity(model) -> None:
    x = torch.randn(B, *model.input_shape)
    attr = ShapNetAttribution(model).attribute(x, target=1)

    def perturb(inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        noise = 0.1 * torch.randn_like(inputs)
        return noise, inputs - noise

    score = infidelity(model, perturb, x, attr, target=1, n_perturb_samples=4)
    assert score.shape == (B,) and bool(torch.isfinite(score).all())


def test_sensitivity_max(model) -> None:
    x = torch.randn(B, *model.input_shape)
    attribution = ShapNetAttribution(model)
    score = sensitivity_max(attribution.attribute, x, target=[0, 1, 2, 0], n_perturb_samples=3)
    assert score.shape == (B,) and bool(torch.isfinite(score).all()) and bool((score > 0).all())
    with_baselines = sensitivity_max(
        attribution.attribute, x, target=2, baselines=model.reference.expand_as(x).clone(), n_perturb_samples=3
    )
    assert with_baselines.shape == (B,) and bool(torch.isfinite(with_baselines).all())
