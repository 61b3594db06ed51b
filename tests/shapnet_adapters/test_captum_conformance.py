"""ShapNetAttribution and LayerShapNetAttribution held to Captum's own conventions (issue #13).

``test_targets_like_captums_target_tests`` follows Captum's ``tests/attr/test_targets.py``: attributing a
batch with per-row targets equals attributing each row alone with its own target (and with a one-element
target list), with and without ``internal_batch_size``, with and without baselines.
"""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist
from captum.attr import LayerActivation, LayerConductance, LayerGradientXActivation, LayerIntegratedGradients
from torch import nn

from shapnet_adapters import ShapNetAttribution
from shapnet_adapters.captum import LayerShapNetAttribution

B = 4

TARGET_CASES = {
    "list": [0, 1, 1, 0],
    "tuples": [(1,), (0,), (2,), (2,)],
    "tensor": torch.tensor([1, 1, 0, 2]),
    "single-tensor": torch.tensor([0]),
    "int": 2,
}


@pytest.mark.parametrize("batching", [None, 1, 3], ids=["one-pass", "batch-1", "batch-3"])
@pytest.mark.parametrize("target", list(TARGET_CASES.values()), ids=list(TARGET_CASES))
def test_targets_like_captums_target_tests(model, target, batching) -> None:
    x = torch.randn(B, *model.input_shape)
    kwargs = {"internal_batch_size": batching, "show_progress": batching == 3}
    with_baselines = {"baselines": model.reference.expand_as(x).clone()}
    attribution = ShapNetAttribution(model)
    for extra in ({}, with_baselines):
        batch = attribution.attribute(x, target=target, **kwargs, **extra)
        for i in range(B):
            per_row = isinstance(target, (list, torch.Tensor)) and len(target) == B
            single_target = target[i] if per_row else target
            single_extra = {"baselines": extra["baselines"][i : i + 1]} if extra else {}
            alone = attribution.attribute(x[i : i + 1], target=single_target, **single_extra)
            torch.testing.assert_close(batch[i : i + 1], alone, atol=1e-4, rtol=0)
            if per_row:  # Captum also compares with a one-element target list
                as_list = attribution.attribute(x[i : i + 1], target=target[i : i + 1], **single_extra)
                torch.testing.assert_close(batch[i : i + 1], as_list, atol=1e-4, rtol=0)


def test_internal_batch_size_never_changes_the_values(shallow) -> None:
    x = torch.randn(7, 5)
    attribution = ShapNetAttribution(shallow)
    baseline = torch.randn(7, 5)  # a per-row baseline is split with the rows
    whole, delta = attribution.attribute(x, baselines=baseline, target=1, return_convergence_delta=True)
    for size in (1, 2, 7, 100):
        torch.testing.assert_close(
            attribution.attribute(x, baselines=baseline, target=1, internal_batch_size=size), whole
        )
    assert float(delta.abs().max()) <= 1e-4
    for bad in (0, -2, 1.5, True):
        with pytest.raises(ValueError, match="internal_batch_size"):
            attribution.attribute(x, target=1, internal_batch_size=bad)
    with pytest.raises(TypeError, match="show_progress"):
        attribution.attribute(x, target=1, show_progress="yes")


def test_feature_mask_naming_the_players_follows_captums_group_convention(make_model) -> None:
    tabular = make_model("shallow")
    x = torch.randn(B, 5)
    plain = ShapNetAttribution(tabular).attribute(x, target=0)
    for mask in (torch.arange(5), torch.arange(5).unsqueeze(0), torch.tensor([4, 2, 0, 1, 3]).expand(B, 5)):
        torch.testing.assert_close(
            ShapNetAttribution(tabular).attribute(x, target=0, feature_mask=mask), plain
        )
    with pytest.raises(ValueError, match="a different id for every feature"):
        ShapNetAttribution(tabular).attribute(x, target=0, feature_mask=torch.tensor([0, 0, 1, 2, 3]))
    with pytest.raises(TypeError, match="integer group ids"):
        ShapNetAttribution(tabular).attribute(x, target=0, feature_mask=torch.zeros(5))

    from shapnet import Stage, VisionShapNet

    vision = VisionShapNet(
        2, 3, stages=[Stage(4, hidden=(8,))], image_size=(4, 4), readout_hidden=(8,)
    ).eval()
    images = torch.randn(B, 2, 4, 4)
    pixels = torch.arange(16).view(1, 1, 4, 4).expand(1, 2, 4, 4)  # channels of a pixel share its id
    attr, delta = ShapNetAttribution(vision).attribute(
        images, target=2, feature_mask=pixels, return_convergence_delta=True
    )
    with torch.no_grad():
        per_pixel = vision.explain(images).values[..., 2]  # (B, H, W)
    torch.testing.assert_close(attr[:, 0], per_pixel)  # every channel carries the whole pixel's value
    torch.testing.assert_close(attr[:, 1], per_pixel)
    assert float(delta.abs().max()) <= 1e-4  # the delta is taken over players, not elements
    with pytest.raises(ValueError, match="one id per pixel"):
        ShapNetAttribution(vision).attribute(images, target=2, feature_mask=torch.arange(32).view(1, 2, 4, 4))
    with pytest.raises(ValueError, match="ShapleyValueSampling"):  # superpixels: another game
        ShapNetAttribution(vision).attribute(
            images, target=2, feature_mask=torch.zeros(1, 1, 4, 4, dtype=torch.long)
        )


def test_data_parallel_is_unwrapped(model) -> None:
    x = torch.randn(B, *model.input_shape)
    wrapped = nn.DataParallel(model)
    attribution = ShapNetAttribution(wrapped)
    assert attribution.forward_func is wrapped and attribution.model is model
    attr, delta = attribution.attribute(x, target=1, return_convergence_delta=True)
    torch.testing.assert_close(attr, ShapNetAttribution(model).attribute(x, target=1))
    assert float(delta.abs().max()) <= 1e-4
    with pytest.raises(TypeError, match="DataParallel"):
        ShapNetAttribution(nn.DataParallel(nn.Linear(5, 3)))


def test_distributed_data_parallel_is_unwrapped(shallow, tmp_path) -> None:
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'rendezvous'}", rank=0, world_size=1)
    try:
        wrapped = nn.parallel.DistributedDataParallel(shallow)
        x = torch.randn(B, 5)
        torch.testing.assert_close(
            ShapNetAttribution(wrapped).attribute(x, target=2),
            ShapNetAttribution(shallow).attribute(x, target=2),
        )
        assert LayerShapNetAttribution(wrapped, 0).attribute(x, target=2).shape == (B, 5)
    finally:
        dist.destroy_process_group()


# --------------------------------------------------------------------------- #
# Layers
# --------------------------------------------------------------------------- #
def layers_of(model) -> list[nn.Module]:
    return list(getattr(model, "layers", None) or getattr(model, "stages", None) or [model.layer])


def test_layer_attribution_equals_explain_layers(model) -> None:
    x = torch.randn(B, *model.input_shape)
    with torch.no_grad():
        ex = model.explain(x, layers=True)
    for index, layer in enumerate(layers_of(model)):
        attribution = LayerShapNetAttribution(model, layer)
        phi = attribution.attribute(x)
        want = ex.layers[index]  # channel-last
        if want.dim() == 4:
            want = want.permute(0, 3, 1, 2)  # the layer's own (B, C, H, W) layout
        torch.testing.assert_close(phi, want)
        torch.testing.assert_close(
            LayerShapNetAttribution(model, index).attribute(x, internal_batch_size=3), phi
        )
        torch.testing.assert_close(
            attribution.attribute((x,), target=1), phi.select(1 if phi.dim() == 4 else -1, 1)
        )
    # The last layer's channels are the outputs: its values for a target are the model's own attributions.
    last = LayerShapNetAttribution(model, -1).attribute(x, target=[0, 2, 1, 0])
    own = ShapNetAttribution(model).attribute(x, target=[0, 2, 1, 0])
    torch.testing.assert_close(last, own.sum(1) if own.dim() == 4 else own)


def test_layer_attribution_to_layer_input(make_model) -> None:
    model = make_model("deep")
    x = torch.randn(B, 5)
    with torch.no_grad():
        ex = model.explain(x, layers=True)
    torch.testing.assert_close(
        LayerShapNetAttribution(model, 2).attribute(x, attribute_to_layer_input=True), ex.layers[1]
    )
    first = LayerShapNetAttribution(model, 0).attribute(x, attribute_to_layer_input=True)
    torch.testing.assert_close(first, (x - model.reference).unsqueeze(-1))


def test_layer_attribution_rejects_foreign_layers(make_model) -> None:
    model = make_model("deep")
    other = make_model("deep")
    with pytest.raises(ValueError, match="one of the model's 3 Shapley layers"):
        LayerShapNetAttribution(model, other.layers[0])
    with pytest.raises(ValueError, match=r"must lie in \[-3, 2\]"):
        LayerShapNetAttribution(model, 3)
    with pytest.raises(TypeError, match="needs a ShapNet"):
        LayerShapNetAttribution(nn.Linear(5, 3), 0)


@pytest.mark.parametrize("kind", ["shallow", "deep", "vision"])
def test_captums_own_layer_methods_work_on_shapnet_layers(make_model, kind) -> None:
    """LayerActivation sees each layer's output tensor (the layer before its residual); gradient-based layer
    methods run through it."""
    model = make_model(kind)
    x = torch.randn(B, *model.input_shape)
    with torch.no_grad():
        ex = model.explain(x, layers=True)
    layers = layers_of(model)
    for index, layer in enumerate(layers):
        activation = LayerActivation(model, layer).attribute(x)
        want = ex.layers[index]
        if want.dim() == 4:  # vision: the stage's output, (B, C_out, H, W), before the passthrough channels
            want = want.permute(0, 3, 1, 2)[:, : activation.shape[1]]
            previous = ex.layers[index - 1].permute(0, 3, 1, 2)[:, : activation.shape[1]] if index else None
        else:  # tabular: (B, F_pad, C) with the padding features, which stay at 0
            assert torch.all(activation[:, want.shape[1] :] == 0)
            activation = activation[:, : want.shape[1]]
            previous = ex.layers[index - 1] if index else None
        # The model adds the layer's input where the channel counts match (before any passthrough channels).
        residual = (
            getattr(model, "residual", False)
            and previous is not None
            and layer.in_channels == layer.out_channels
        )
        torch.testing.assert_close(activation + (previous if residual else 0), want, atol=1e-5, rtol=1e-5)
    layer = layers[-1]
    baseline = model.reference.expand_as(x).clone()
    for method in (LayerIntegratedGradients(model, layer), LayerConductance(model, layer)):
        attr = method.attribute(x, baselines=baseline, target=1, n_steps=8)
        assert attr.shape == LayerActivation(model, layer).attribute(x).shape and bool(
            torch.isfinite(attr).all()
        )
    gxa = LayerGradientXActivation(model, layer).attribute(x, target=1)
    assert bool(torch.isfinite(gxa).all())
