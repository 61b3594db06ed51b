"""What a PyTorch user expects of a built model: settable pruning, early shape errors, tolerant baselines,
layers that return tensors to their forward hooks (issue #13)."""

from __future__ import annotations

import pytest
import torch

from shapnet import DeepShapNet, Pruning, ShallowShapNet, ShapleyConv2d, ShapleyLayer, Stage, VisionShapNet


@pytest.mark.parametrize("value", [0.5, Pruning(0.5), {"fraction": 0.5}])
def test_prune_setter_takes_effect_and_shows_in_repr(value: object) -> None:
    model = DeepShapNet(16, 3, channels=8, hidden=(16,)).eval()
    x = torch.randn(6, 16)
    assert model.prune is None and "prune=None" in repr(model)
    assert model.explain(x).skipped is None
    model.prune = value
    assert model.prune == Pruning(0.5) and model.pruning == Pruning(0.5)
    assert "prune=Pruning(fraction=0.5" in repr(model)
    assert model.config["prune"] == Pruning(0.5).to_dict()
    ex = model.explain(x)
    assert ex.skipped is not None and ex.skipped > 0.0
    torch.testing.assert_close(ex.predictions, model(x))
    model.prune = None
    assert model.explain(x).skipped is None and "prune=None" in repr(model)


def test_prune_setter_validates() -> None:
    with pytest.raises(ValueError, match="single Shapley layer"):
        ShallowShapNet(4, 2).prune = 0.5
    vision = VisionShapNet(1, 2, stages=[Stage(2, hidden=(4,))], image_size=(4, 4), readout_hidden=(4,))
    vision.prune = 0.25
    assert "prune=Pruning(fraction=0.25" in repr(vision)
    with pytest.raises(ValueError, match="granularity='feature'"):
        vision.prune = Pruning(0.5, granularity="group")
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        DeepShapNet(4, 2).prune = 1.5


def test_vision_default_stages_must_fit_the_image() -> None:
    with pytest.raises(
        ValueError, match=r"stage 3 .*dilation=8.* spans 9x9 pixels.*image_size 8x8.*at least 9x9"
    ):
        VisionShapNet(1, 10, image_size=(8, 8))
    with pytest.raises(ValueError, match=r"stage 0 .*spans 5x5 pixels.*image_size 4x4.*smaller kernel_size"):
        VisionShapNet(1, 10, stages=[Stage(4, kernel_size=3, dilation=2)], image_size=4)
    VisionShapNet(1, 10, image_size=(9, 9))  # the smallest image the defaults fit
    padded = VisionShapNet(1, 2, stages=[Stage(2, kernel_size=3, padding=1, hidden=(4,))], image_size=2)
    assert padded(torch.randn(1, 1, 2, 2)).shape == (1, 2)


@pytest.mark.parametrize("kind", ["deep", "vision"])
def test_baseline_equal_to_the_reference_up_to_rounding_is_accepted(kind: str) -> None:
    if kind == "deep":
        model = DeepShapNet(5, 2, channels=3, hidden=(4,), reference=torch.linspace(-1, 1, 5)).eval()
    else:
        model = VisionShapNet(
            1, 2, stages=[Stage(2, hidden=(4,))], image_size=4, readout_hidden=(4,), reference=0.3
        ).eval()
    x = torch.randn(3, *model.input_shape)
    near = model.reference.double().add(1e-8).float()  # e.g. a training mean recomputed in float32
    torch.testing.assert_close(model.explain(x, baseline=near).values, model.explain(x).values)
    with pytest.raises(ValueError, match="cannot explain against a baseline other than its own reference"):
        model.explain(x, baseline=model.reference + 1e-3)


def test_layers_return_tensors_and_hooks_see_them() -> None:
    layer = ShapleyLayer([(0, 1), (2, 3)], 2, 3, hidden=(4,))
    x = torch.randn(5, 4, 2)
    seen = []
    handle = layer.register_forward_hook(lambda module, args, output: seen.append(output))
    out = layer(x)
    handle.remove()
    assert isinstance(out, torch.Tensor) and out.shape == (5, 4, 3)
    assert len(seen) == 1 and seen[0] is out
    torch.testing.assert_close(out, layer.shapley(x).values)
    conv = ShapleyConv2d(2, 3, 2, hidden=(4,))
    image = torch.randn(2, 2, 5, 5)
    assert isinstance(conv(image), torch.Tensor) and conv(image).shape == (2, 3, 5, 5)
    torch.testing.assert_close(conv(image), conv.shapley(image).values)


@pytest.mark.parametrize("kind", ["shallow", "deep", "vision"])
def test_a_hook_inside_a_model_sees_each_layer_and_can_replace_its_output(kind: str) -> None:
    """The models call watched layers through ``__call__``: hooks fire, and what they return is used."""
    if kind == "shallow":
        model, layers = ShallowShapNet(5, 3, hidden=(8,)).eval(), None
        layers = [model.layer]
    elif kind == "deep":
        model = DeepShapNet(5, 3, channels=4, hidden=(8,), reference=torch.full((5,), 0.25)).eval()
        layers = list(model.layers)
    else:
        model = VisionShapNet(1, 3, stages=[Stage(4, hidden=(8,))], image_size=6, readout_hidden=(8,)).eval()
        layers = list(model.stages)
    x = torch.randn(4, *model.input_shape)
    plain = model.explain(x)
    for layer in layers:
        seen = []
        handle = layer.register_forward_hook(lambda module, args, output: seen.append(output))
        watched = model.explain(x)
        logits = model(x)
        handle.remove()
        assert len(seen) == 2 and all(isinstance(t, torch.Tensor) for t in seen)
        torch.testing.assert_close(watched.values, plain.values)
        torch.testing.assert_close(logits, plain.predictions)
    # A hook that zeroes the last layer's output leaves only the bias (base) in the prediction.
    handle = layers[-1].register_forward_hook(lambda module, args, output: torch.zeros_like(output))
    zeroed = model(x)
    handle.remove()
    torch.testing.assert_close(zeroed, plain.base_values)
