"""Shapley-consistency regularisation for deep ShapNets, and the fidelity measure it improves.

A Deep or Vision ShapNet guarantees local accuracy and missingness, but its explanation ``Phi`` is only an
approximation of the Shapley values of its own output ``f``. The exact Shapley values ``phi*`` are the
unique additive attribution that fits the game ``v(S) = f(x_S, r) - f(r)`` best in the Shapley-kernel
weighted least-squares sense (Lundberg & Lee 2017, Kernel SHAP). :func:`shapley_consistency` is a
stochastic estimate of that objective for the model's own ``Phi``: it samples coalitions ``S`` from the
Shapley kernel and penalises ``(f(x_S, r) - f(r) - sum_{i in S} Phi_i)^2``. For an additive model (a
``"gam"`` ShallowShapNet) it is exactly zero; with interactions the exact values minimise its expectation
but leave a floor (the part of the game no additive attribution fits), which the gradient through
``f(x_S)`` also pushes down. For a deep ShapNet, training with it pulls the built-in explanation towards
exactness, partly by making the model more additive.
:func:`explanation_error` measures how far ``Phi`` is from ``phi*`` (brute force, ``F <= 20``).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import cast

import torch
from torch import nn

from ._validation import check_input, check_positive_int
from .coalitions import shapley_kernel_size_probabilities
from .exact import exact_shapley
from .explanation import ShapleyExplanation
from .protocol import SelfExplaining
from .targets import output_indices

__all__ = [
    "consistency_inputs",
    "consistency_loss",
    "explanation_error",
    "sample_kernel_coalitions",
    "shapley_consistency",
]


def _model_shapes(model: object) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """``(input_shape, feature_shape)``: ``((F,), (F,))`` for tabular, ``((C, H, W), (H, W))`` for images."""
    if (
        not isinstance(model, nn.Module)
        or not hasattr(model, "input_shape")
        or not hasattr(model, "reference")
    ):
        raise TypeError(
            "model must be a ShapNet (an nn.Module with `input_shape` and a `reference` buffer, e.g. "
            f"shapnet.DeepShapNet), got {type(model).__name__}."
        )
    # Attributes of a ShapNet, checked above: nn.Module.__getattr__ types them as Tensor | Module.
    input_shape = tuple(int(s) for s in cast("Sequence[int]", model.input_shape))
    if len(input_shape) == 1:
        return input_shape, input_shape
    if len(input_shape) == 3:
        return input_shape, input_shape[1:]
    raise ValueError(f"model.input_shape must be (F,) or (C, H, W), got {input_shape}.")


def sample_kernel_coalitions(
    n: int,
    n_features: int,
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Draw ``n`` coalitions from the Shapley kernel, vectorised.

    The size ``s`` is drawn with probability ``∝ (F-1) / (s (F-s))`` for ``0 < s < F``, then a uniform
    subset of that size (the ``s`` smallest of ``F`` i.i.d. uniforms). Uses ``generator`` if given, else
    torch's global RNG (so ``torch.manual_seed`` makes it reproducible).

    Args:
        n: number of coalitions.
        n_features: ``F >= 2``.
        generator: optional ``torch.Generator`` (on ``device``).
        device: where to create the masks; defaults to the generator's device, else CPU.

    Returns:
        ``(n, F)`` bool; every row has between 1 and ``F - 1`` True entries.
    """
    check_positive_int(n, "n")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}.")
    if device is None:
        device = generator.device if generator is not None else torch.device("cpu")
    probs = shapley_kernel_size_probabilities(n_features).to(device)  # raises for F < 2
    sizes = torch.multinomial(probs, n, replacement=True, generator=generator) + 1  # (n,)
    noise = torch.rand(n, n_features, generator=generator, device=device)
    ranks = noise.argsort(1).argsort(1)  # (n, F): a uniform random permutation per row
    return ranks < sizes.unsqueeze(1)


def _check_target(
    target: object, batch: int, n_outputs: int, device: torch.device
) -> torch.Tensor | int | None:
    """None (every output), an int in ``[0, K)`` or a ``(B,)`` long tensor on ``device``
    (:func:`~shapnet.targets.output_indices`, without negative indices)."""
    if target is None:
        return None
    indices = output_indices(target, batch, n_outputs, negative=False)
    return indices if isinstance(indices, int) else indices.to(device)


def shapley_consistency(
    model: nn.Module,
    x: torch.Tensor,
    values: torch.Tensor | ShapleyExplanation,
    *,
    n_coalitions: int = 1,
    target: int | torch.Tensor | Sequence[int] | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Shapley-consistency loss: how far the model's explanation is from being additive on its own game.

    For each sample and each of ``n_coalitions`` coalitions ``S`` drawn from the Shapley kernel (sizes
    ``0 < |S| < F``; the empty and full coalitions are satisfied exactly by local accuracy), the residual
    ``f(x_S, r) - f(r) - sum_{i in S} values_i`` is squared and averaged over samples, coalitions and
    outputs (or only the target output). ``x_S = torch.where(mask, x, r)``; for images a coalition is a
    set of pixels, with all channels of a pixel masked together (mask ``(B, 1, H, W)``).

    Gradients flow through both the masked predictions and ``values``; do not detach either (see
    docs/guide/consistency.md: detaching ``f(x_S)`` collapsed accuracy on Yeast). Cost: one extra
    forward pass per coalition per sample (plus one row for ``f(r)``), all in one batched call of ``model``.

    Args:
        model: a ShapNet (``model(x) -> (B, K)`` logits, ``model.reference``, ``model.input_shape``).
        x: ``(B, F)`` or ``(B, C, H, W)``.
        values: the model's explanation of ``x`` from the same forward pass, ``(B, F, K)`` or
            ``(B, H, W, K)`` (``model.explain(x).values``); a :class:`ShapleyExplanation` is also accepted.
        n_coalitions: coalitions per sample.
        target: None (all outputs), an int, or ``(B,)`` integer per-sample outputs.
        generator: optional ``torch.Generator``; default torch's global RNG.

    Returns:
        Scalar loss (differentiable), in ``values``' dtype; 0 for an empty batch.

    Example:
        >>> ex = model.explain(xb)
        >>> loss = F.cross_entropy(ex.predictions, yb) + 10.0 * shapley_consistency(model, xb, ex.values)
    """
    input_shape, feature_shape = _model_shapes(model)
    x = check_input(x, input_shape)
    if isinstance(values, ShapleyExplanation):
        values = values.values
    if not isinstance(values, torch.Tensor) or not values.is_floating_point():
        raise TypeError(
            "values must be a floating-point tensor (model.explain(x).values), got "
            + (f"dtype {values.dtype}." if isinstance(values, torch.Tensor) else f"{type(values).__name__}.")
        )
    batch = x.shape[0]
    n_outputs = getattr(model, "n_outputs", values.shape[-1] if values.dim() > 0 else None)
    expected = (batch, *feature_shape, n_outputs)
    if tuple(values.shape) != expected:
        layout = "(B, F, K)" if len(input_shape) == 1 else "(B, H, W, K), one value per pixel,"
        raise ValueError(
            f"values must have shape {layout} = {expected} for this model and x, got {tuple(values.shape)}. "
            "Pass model.explain(x).values (not per_element())."
        )
    check_positive_int(n_coalitions, "n_coalitions")
    n_features = math.prod(feature_shape)
    if n_features < 2:
        raise ValueError(
            f"the consistency loss needs at least 2 features (with 1 feature every explanation is exact), "
            f"got {n_features}."
        )
    target = _check_target(target, batch, values.shape[-1], x.device)  # == n_outputs, checked above

    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}.")

    if batch == 0:  # nothing to penalise: a zero that keeps the graph (a mean over no terms would be NaN)
        return values.sum() * 0.0
    mixed, mask = consistency_inputs(model, x, n_coalitions=n_coalitions, generator=generator)
    # f(r) rides along as the last row, so the whole loss costs a single forward call.
    return consistency_loss(model(mixed), values, mask, target=target)


def consistency_inputs(
    model: nn.Module, x: torch.Tensor, *, n_coalitions: int = 1, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The inputs whose predictions :func:`consistency_loss` needs: every ``x_S`` and the reference.

    Use it to fold the consistency forward into the training forward (one call of ``model.explain`` on
    ``torch.cat([x, inputs])``), which is what :func:`shapnet.training.fit` does.

    Returns:
        ``inputs``: ``(B * n_coalitions + 1, *input_shape)``, sample-major (row ``b * n + c`` is sample
        ``b``'s coalition ``c``), the reference last; ``mask``: ``(B * n_coalitions, F)`` bool coalitions.
    """
    input_shape, feature_shape = _model_shapes(model)
    n_features = math.prod(feature_shape)
    n = x.shape[0] * n_coalitions
    device = generator.device if generator is not None else x.device
    mask = sample_kernel_coalitions(n, n_features, generator=generator, device=device).to(x.device)
    ref = cast(torch.Tensor, model.reference).to(x)  # a buffer (checked by _model_shapes)
    x_rep = x.repeat_interleave(n_coalitions, 0)  # (B * n, *in)
    input_mask = mask.view(n, *feature_shape) if len(input_shape) == 1 else mask.view(n, 1, *feature_shape)
    return torch.cat([torch.where(input_mask, x_rep, ref), ref.unsqueeze(0)]), mask


def consistency_loss(
    outputs: torch.Tensor,
    values: torch.Tensor,
    mask: torch.Tensor,
    *,
    target: int | torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean squared residual ``f(x_S) - f(r) - sum_{i in S} values_i`` from precomputed predictions.

    Args:
        outputs: ``(B * n + 1, K)``: the model's predictions on :func:`consistency_inputs`.
        values: ``(B, *features, K)``.
        mask: ``(B * n, F)`` from :func:`consistency_inputs`.
        target: None, an int or a validated ``(B,)`` long tensor.
    """
    batch, n_outputs = values.shape[0], values.shape[-1]
    n_features = mask.shape[1]
    n_coalitions = mask.shape[0] // batch
    n = batch * n_coalitions
    if tuple(outputs.shape) != (n + 1, n_outputs):
        raise ValueError(
            f"model must return logits of shape ({n + 1}, {n_outputs}) matching values, "
            f"got {tuple(outputs.shape)}."
        )
    f_masked = outputs[:n].view(batch, n_coalitions, n_outputs)
    f_ref = outputs[n]
    flat = values.reshape(batch, n_features, n_outputs)
    in_coalition = torch.einsum(
        "bcf,bfk->bck", mask.view(batch, n_coalitions, n_features).to(flat.dtype), flat
    )
    residual = f_masked - f_ref - in_coalition  # (B, n, K)
    if target is None:
        return residual.pow(2).mean()
    if isinstance(target, int):
        return residual[..., target].pow(2).mean()
    picked = residual.gather(2, target.view(batch, 1, 1).expand(batch, n_coalitions, 1))
    return picked.pow(2).mean()


def spearman_rows(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Spearman correlation of each row pair of two ``(R, F)`` tensors: ``(R,)`` float64, NaN where a row is
    constant. Ranks are scipy's ``rankdata`` (ties share their average rank), so this is
    ``scipy.stats.spearmanr`` row by row, vectorised."""
    from scipy.stats import rankdata  # scipy comes with scikit-learn

    if a.shape != b.shape or a.dim() != 2:
        raise ValueError(f"a and b must both have shape (R, F), got {tuple(a.shape)} and {tuple(b.shape)}.")
    ra, rb = (torch.from_numpy(rankdata(t.detach().cpu().double().numpy(), axis=-1)) for t in (a, b))
    ra, rb = ra - ra.mean(-1, keepdim=True), rb - rb.mean(-1, keepdim=True)
    denom = ra.norm(dim=-1) * rb.norm(dim=-1)
    corr = (ra * rb).sum(-1) / denom
    return torch.where(denom > 0, corr, torch.full_like(corr, float("nan")))


@torch.no_grad()
def explanation_error(
    model: SelfExplaining, x: torch.Tensor, *, chunk_size: int | None = None
) -> dict[str, float]:
    """How far a ShapNet's built-in explanation is from the exact Shapley values of its own output.

    Compares ``model.explain(x).values`` with :func:`shapnet.exact_shapley` of ``model`` at ``x`` relative
    to ``model.reference`` (all ``2**F`` coalitions, so ``F <= 20``; for images the players are pixels,
    all channels of a pixel together).

    Args:
        model: a ShapNet.
        x: ``(B, F)`` or ``(B, C, H, W)``.
        chunk_size: coalitions per model call, passed to :func:`shapnet.exact_shapley`.

    Returns:
        ``{"relative_l2": ||Phi - phi*|| / ||phi*|| (Frobenius, over the whole batch),
        "spearman": mean over samples and outputs of the rank correlation across features}``.
        Pairs where either vector is constant (e.g. ``x == reference``) are left out of the Spearman mean;
        it is NaN if none is left.
    """
    input_shape, feature_shape = _model_shapes(model)
    x = check_input(x, input_shape)
    n_features = math.prod(feature_shape)
    phi = model.explain(x).values.reshape(x.shape[0], n_features, -1)  # (B, F, K)
    ref = model.reference.to(x)
    if len(input_shape) == 1 or input_shape[0] == 1:
        # Tabular, or one channel: input elements are exactly the pixels.
        exact = exact_shapley(model, x, ref, chunk_size=chunk_size).reshape(phi.shape)
    else:
        # Players are pixels: a game on pixel masks, one sample at a time.
        def pixel_game(m: torch.Tensor, xb: torch.Tensor) -> torch.Tensor:
            return model(torch.where(m.view(-1, 1, *feature_shape) > 0.5, xb, ref))

        all_pixels = torch.ones(1, n_features, dtype=x.dtype, device=x.device)
        exact = torch.cat(
            [
                exact_shapley(functools.partial(pixel_game, xb=xb), all_pixels, 0.0, chunk_size=chunk_size)
                for xb in x
            ]
        )
    phi, exact = phi.to(torch.float64), exact.to(torch.float64)
    relative = float((phi - exact).norm() / exact.norm())
    rows_phi = phi.transpose(1, 2).reshape(-1, n_features)  # (B * K, F)
    rows_exact = exact.transpose(1, 2).reshape(-1, n_features)
    rho = spearman_rows(rows_phi, rows_exact)
    spearman = float(rho.nanmean()) if bool((~rho.isnan()).any()) else float("nan")
    return {"relative_l2": relative, "spearman": spearman}
