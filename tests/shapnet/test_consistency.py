"""Tests for shapnet.consistency: the Shapley-consistency loss and the explanation-error measure.

Oracles: a slow per-sample, per-coalition re-implementation of the loss; the Shapley-kernel expectation
enumerated over all coalitions (d = 4); brute-force Shapley values (shapnet.exact_shapley) and
scipy.stats.spearmanr.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from shapnet import DeepShapNet, ShallowShapNet, Stage, VisionShapNet, exact_shapley
from shapnet.coalitions import shapley_kernel_size_probabilities
from shapnet.consistency import explanation_error, sample_kernel_coalitions, shapley_consistency


def deep_model(seed: int = 0, n_features: int = 6, n_outputs: int = 3) -> DeepShapNet:
    torch.manual_seed(seed)
    return DeepShapNet(n_features, n_outputs, channels=4, hidden=(8,), depth=4).double()


def vision_model(seed: int = 0, in_channels: int = 2, size: tuple[int, int] = (3, 4)) -> VisionShapNet:
    torch.manual_seed(seed)
    return VisionShapNet(
        in_channels, 3, stages=[Stage(4, hidden=(8,))], image_size=size, readout_hidden=(8,)
    ).double()


def slow_consistency(model, x, values, masks, n_coalitions, target=None) -> torch.Tensor:
    """The loss written out per sample and coalition, copying the pixels/features of S one by one."""
    image = x.dim() == 4
    ref = model.reference
    f_ref = model(ref.unsqueeze(0))[0]
    n_features = masks.shape[1]
    terms = []
    for b in range(x.shape[0]):
        for c in range(n_coalitions):
            members = masks[b * n_coalitions + c].nonzero().flatten().tolist()
            mixed = ref.clone()
            for i in members:
                if image:
                    row, col = divmod(i, x.shape[3])
                    mixed[:, row, col] = x[b, :, row, col]
                else:
                    mixed[i] = x[b, i]
            phi = values[b].reshape(n_features, -1)
            residual = model(mixed.unsqueeze(0))[0] - f_ref - phi[members].sum(0)  # (K,)
            if target is None:
                terms.append(residual.pow(2).mean())
            else:
                t = target if isinstance(target, int) else int(target[b])
                terms.append(residual[t].pow(2))
    return torch.stack(terms).mean()


def kernel_expected_loss(model, x, values) -> torch.Tensor:
    """E_S[(v(S) - v(empty) - sum_{i in S} values_i)^2] under the Shapley kernel, enumerating every S."""
    d = x.shape[1]
    size_probs = shapley_kernel_size_probabilities(d)
    with torch.no_grad():
        f_ref = model(model.reference.unsqueeze(0))[0]
        total = torch.zeros((), dtype=torch.float64)
        for size in range(1, d):
            for members in itertools.combinations(range(d), size):
                weight = size_probs[size - 1] / math.comb(d, size)
                mask = torch.zeros(d, dtype=torch.bool)
                mask[list(members)] = True
                mixed = torch.where(mask, x, model.reference)
                residual = model(mixed) - f_ref - values[:, list(members)].sum(1)  # (B, K)
                total = total + weight * residual.pow(2).mean()
    return total


# --------------------------------------------------------------------------- #
# The coalition sampler


def test_sampler_follows_the_shapley_kernel():
    torch.manual_seed(0)
    d, n = 8, 100_000
    masks = sample_kernel_coalitions(n, d)
    sizes = masks.sum(1)
    assert masks.dtype == torch.bool and masks.shape == (n, d)
    assert int(sizes.min()) >= 1 and int(sizes.max()) <= d - 1  # never empty, never full
    freq = torch.bincount(sizes, minlength=d)[1:].double() / n
    assert torch.allclose(freq, shapley_kernel_size_probabilities(d), atol=0.005)
    # Given its size, a subset is uniform: every feature is in S half the time (the kernel is symmetric).
    assert torch.allclose(masks.double().mean(0), torch.full((d,), 0.5, dtype=torch.float64), atol=0.01)
    # Within size 2, all 28 pairs appear about equally often.
    pairs = masks[sizes == 2].nonzero()[:, 1].view(-1, 2)
    counts = torch.bincount(pairs[:, 0] * d + pairs[:, 1], minlength=d * d).double()
    counts = counts[counts > 0]
    assert counts.numel() == 28 and float(counts.std() / counts.mean()) < 0.1


def test_sampler_is_reproducible():
    torch.manual_seed(3)
    a = sample_kernel_coalitions(50, 5)
    torch.manual_seed(3)
    b = sample_kernel_coalitions(50, 5)
    c = sample_kernel_coalitions(50, 5, generator=torch.Generator().manual_seed(3))
    d = sample_kernel_coalitions(50, 5, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and torch.equal(c, d)
    assert not torch.equal(c, sample_kernel_coalitions(50, 5, generator=torch.Generator().manual_seed(4)))


# --------------------------------------------------------------------------- #
# The loss


def test_loss_is_zero_for_an_additive_shallow_shapnet():
    torch.manual_seed(0)
    model = ShallowShapNet(5, 3, groups="gam").double()
    x = torch.randn(16, 5, dtype=torch.float64)
    loss = shapley_consistency(model, x, model.explain(x).values, n_coalitions=8)
    assert loss.item() <= 1e-10


def test_exact_values_of_an_interacting_model_minimise_the_loss_but_not_to_zero():
    # A ShallowShapNet on all pairs has exact values, yet v(S) - v(empty) is not additive in S: the loss
    # has a floor (the model's interactions), and the exact values are its minimiser among efficient values.
    torch.manual_seed(1)
    model = ShallowShapNet(4, 2, groups="pairs").double()
    x = torch.randn(4, 4, dtype=torch.float64)
    exact = model.explain(x).values.detach()
    assert torch.allclose(exact, exact_shapley(model, x, model.reference), atol=1e-10)
    delta = torch.randn_like(exact)
    delta = 0.3 * (delta - delta.mean(1, keepdim=True))  # keeps efficiency: sums to 0 over features
    floor = kernel_expected_loss(model, x, exact)
    assert float(floor) > 1e-4
    assert float(kernel_expected_loss(model, x, exact + delta)) > float(floor) + 1e-3
    # The Monte Carlo loss estimates that expectation (relative std about 1% with 8000 coalitions).
    for values in (exact, exact + delta):
        estimate = shapley_consistency(
            model, x, values, n_coalitions=2000, generator=torch.Generator().manual_seed(0)
        )
        assert estimate.item() == pytest.approx(kernel_expected_loss(model, x, values).item(), rel=0.05)


def test_loss_is_positive_for_a_random_deep_shapnet():
    model = deep_model()
    x = torch.randn(16, 6, dtype=torch.float64)
    assert shapley_consistency(model, x, model.explain(x).values, n_coalitions=4).item() > 1e-6


@pytest.mark.parametrize("kind", ["tabular", "image"])
@pytest.mark.parametrize("target", [None, 2, "per-sample"])
def test_loss_matches_slow_reference(kind, target):
    model = deep_model() if kind == "tabular" else vision_model()
    x = torch.randn(5, *model.input_shape, dtype=torch.float64)
    if target == "per-sample":
        target = torch.tensor([0, 2, 1, 1, 0])
    values = model.explain(x).values
    n_features = 6 if kind == "tabular" else 12
    masks = sample_kernel_coalitions(5 * 3, n_features, generator=torch.Generator().manual_seed(7))
    loss = shapley_consistency(
        model, x, values, n_coalitions=3, target=target, generator=torch.Generator().manual_seed(7)
    )
    expected = slow_consistency(model, x, values, masks, 3, target)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-9, abs=1e-12)


def test_targets_partition_the_full_loss():
    model = deep_model()
    x = torch.randn(8, 6, dtype=torch.float64)
    values = model.explain(x).values

    def loss(target):
        torch.manual_seed(11)  # the global RNG: same coalitions on every call
        return shapley_consistency(model, x, values, n_coalitions=2, target=target).item()

    per_output = [loss(k) for k in range(3)]
    assert loss(None) == pytest.approx(sum(per_output) / 3, rel=1e-12)
    assert loss(torch.full((8,), 1)) == pytest.approx(per_output[1], rel=1e-12)
    assert loss([1] * 8) == pytest.approx(per_output[1], rel=1e-12)
    assert loss(torch.tensor(2)) == pytest.approx(per_output[2], rel=1e-12)
    mixed = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    assert loss(mixed) != pytest.approx(per_output[0])


def test_all_coalitions_go_through_one_forward_call():
    model = deep_model()
    x = torch.randn(10, 6, dtype=torch.float64)
    values = model.explain(x).values
    rows = []
    handle = model.register_forward_hook(lambda module, inputs, output: rows.append(inputs[0].shape[0]))
    try:
        shapley_consistency(model, x, values, n_coalitions=7)
    finally:
        handle.remove()
    assert rows == [10 * 7 + 1]  # B * n_coalitions masked inputs plus the reference


def test_explanation_object_is_accepted():
    model = deep_model()
    x = torch.randn(4, 6, dtype=torch.float64)
    ex = model.explain(x)
    torch.manual_seed(0)
    a = shapley_consistency(model, x, ex)
    torch.manual_seed(0)
    assert a.item() == shapley_consistency(model, x, ex.values).item()


# --------------------------------------------------------------------------- #
# Gradients


@pytest.mark.parametrize(
    "make",
    [
        lambda: DeepShapNet(8, 3, channels=4, hidden=(8,), depth=6),
        lambda: VisionShapNet(1, 3, stages=[Stage(4, hidden=(8,))], image_size=(8, 8), readout_hidden=(8,)),
    ],
    ids=["deep", "vision"],
)
def test_gradients_reach_every_parameter(make):
    torch.manual_seed(0)
    model = make()
    x = torch.randn(16, *model.input_shape)
    shapley_consistency(model, x, model.explain(x).values, n_coalitions=2).backward()
    for name, param in model.named_parameters():
        assert param.grad is not None, name
        if name == "bias":
            # The output constant cancels in f(x_S) - f(r): the loss does not depend on it.
            assert float(param.grad.abs().max()) < 1e-6
        else:
            assert float(param.grad.abs().max()) > 0, name


def test_gradients_flow_through_both_sides():
    model = deep_model()
    x = torch.randn(16, 6, dtype=torch.float64)
    first = model.layers[0].mlp
    grads = {}
    for side in ("both", "predictions only"):
        model.zero_grad()
        values = model.explain(x).values
        torch.manual_seed(0)
        shapley_consistency(model, x, values if side == "both" else values.detach()).backward()
        grads[side] = torch.cat([p.grad.flatten() for p in first.parameters()])
    assert float(grads["predictions only"].abs().max()) > 0  # through f(x_S)
    assert not torch.allclose(grads["both"], grads["predictions only"])  # and through the values


# --------------------------------------------------------------------------- #
# Training


def _train(lam: float, seed: int = 0, steps: int = 200) -> tuple[dict[str, float], float]:
    torch.manual_seed(seed)
    x = torch.randn(512, 6)
    # Interactions (x0 x1, x3 x4 x5) make a deep ShapNet's own explanation inexact.
    y = (x[:, 0] * x[:, 1] + torch.sin(2 * x[:, 2]) + x[:, 3] * x[:, 4] * x[:, 5] + 0.5 * x[:, 5]).unsqueeze(1)
    model = DeepShapNet(6, 1, channels=8, hidden=(16,))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    x_eval = torch.randn(64, 6)
    for _ in range(steps):
        idx = torch.randint(0, 512, (64,))
        ex = model.explain(x[idx])
        loss = (ex.predictions - y[idx]).pow(2).mean()
        if lam:
            loss = loss + lam * shapley_consistency(model, x[idx], ex.values)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        mse = float((model(x) - y).pow(2).mean() / y.var())
    return explanation_error(model, x_eval), mse


def test_training_with_the_loss_makes_the_explanation_more_exact():
    plain, plain_mse = _train(0.0)
    regularised, reg_mse = _train(10.0)
    assert regularised["relative_l2"] < 0.6 * plain["relative_l2"]  # about 0.10 vs 0.30
    assert regularised["spearman"] > plain["spearman"]
    assert plain_mse < 0.6 and reg_mse < 0.8  # both still fit the target (relative MSE)


# --------------------------------------------------------------------------- #
# explanation_error


def test_explanation_error_of_a_shallow_shapnet_is_zero():
    torch.manual_seed(0)
    model = ShallowShapNet(5, 2).double()
    result = explanation_error(model, torch.randn(10, 5, dtype=torch.float64))
    assert result["relative_l2"] < 1e-10
    assert result["spearman"] == pytest.approx(1.0)


def test_explanation_error_matches_numpy_and_scipy():
    model = deep_model(seed=2)
    x = torch.randn(7, 6, dtype=torch.float64)
    x[0, 2] = 0.0  # a feature at its reference: tied zeros in both rankings
    result = explanation_error(model, x, chunk_size=5)
    phi = model.explain(x).values.detach().numpy()
    exact = exact_shapley(model, x, model.reference).numpy()
    assert result["relative_l2"] == pytest.approx(np.linalg.norm(phi - exact) / np.linalg.norm(exact), rel=1e-9)
    rhos = [spearmanr(phi[b, :, k], exact[b, :, k]).statistic for b in range(7) for k in range(3)]
    assert result["spearman"] == pytest.approx(float(np.mean(rhos)), rel=1e-9)
    assert 0 < result["relative_l2"] and result["spearman"] < 1


def test_explanation_error_on_images_uses_pixels_as_players():
    # 1x1 Shapley convolutions only: the model is additive over pixels (each pixel's 2 channels together),
    # so its per-pixel values are exact in the pixel game (not in the game of single channels).
    torch.manual_seed(0)
    model = VisionShapNet(
        2, 3, stages=[Stage(4, kernel_size=1, hidden=(8,))], image_size=(2, 3), readout_hidden=(8,)
    ).double()
    x = torch.randn(4, 2, 2, 3, dtype=torch.float64)
    assert explanation_error(model, x)["relative_l2"] < 1e-10
    # With 2x2 windows the pixel values are inexact but efficient; the error is measured on pixels.
    inexact = vision_model(seed=1, size=(2, 3))
    result = explanation_error(inexact, x)
    assert 0 < result["relative_l2"] < 2 and -1 <= result["spearman"] <= 1


# --------------------------------------------------------------------------- #
# Validation


def test_bad_inputs_raise_clear_errors():
    model = deep_model()
    x = torch.randn(4, 6, dtype=torch.float64)
    values = model.explain(x).values
    with pytest.raises(ValueError, match=r"values must have shape \(B, F, K\)"):
        shapley_consistency(model, x, values[:, :5])
    with pytest.raises(ValueError, match="values must have shape"):
        shapley_consistency(model, x, values[:2])
    with pytest.raises(TypeError, match="values must be a floating-point tensor"):
        shapley_consistency(model, x, values.detach().numpy())
    for bad in (0, -1):
        with pytest.raises(ValueError, match=f"n_coalitions == {bad}, must be >= 1"):
            shapley_consistency(model, x, values, n_coalitions=bad)
    for bad in (1.5, True):
        with pytest.raises(TypeError, match="n_coalitions must be an"):
            shapley_consistency(model, x, values, n_coalitions=bad)
    with pytest.raises(ValueError, match=r"target must be in \[0, 3\)"):
        shapley_consistency(model, x, values, target=3)
    with pytest.raises(ValueError, match=r"shape \(B,\)"):
        shapley_consistency(model, x, values, target=torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="target entries"):
        shapley_consistency(model, x, values, target=torch.tensor([0, 1, 2, 5]))
    with pytest.raises(TypeError, match="integer class indices"):
        shapley_consistency(model, x, values, target=torch.zeros(4))
    with pytest.raises(TypeError, match="generator"):
        shapley_consistency(model, x, values, generator=0)
    with pytest.raises(TypeError, match="must be a ShapNet"):
        shapley_consistency(torch.nn.Linear(6, 3), x, values)
    with pytest.raises(ValueError, match="wrong number of features"):
        shapley_consistency(model, x[:, :5], values)
    single = ShallowShapNet(1, 2)
    with pytest.raises(ValueError, match="at least 2 features"):
        shapley_consistency(single, torch.randn(3, 1), single.explain(torch.randn(3, 1)).values)


def test_image_values_must_be_per_pixel():
    model = vision_model()
    x = torch.randn(2, 2, 3, 4, dtype=torch.float64)
    ex = model.explain(x)
    with pytest.raises(ValueError, match=r"\(B, H, W, K\), one value per pixel"):
        shapley_consistency(model, x, ex.per_element())
