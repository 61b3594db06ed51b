"""The attribution methods the benchmarks compare: one registry, each method explaining a given model.

Every method has the same signature::

    method(model, x, target, *, background, seed) -> attributions

* ``model``: an ``nn.Module`` returning logits ``(B, K)`` (a ShapNet or any other classifier);
* ``x``: ``(B, *input_shape)`` float32, ``input_shape`` being ``(F,)`` or ``(C, H, W)``;
* ``target``: ``(B,)`` int64, the output explained for each row;
* ``background``: ``(M, *input_shape)``, the baseline / background rows (the benchmarks pass one row,
  the model's reference = the training mean, so that every method explains the same game);
* ``seed``: seeds every random draw of the method (global torch and numpy RNG states are restored);
* returns ``(B, *input_shape)`` float32 attributions for ``target``.

Look methods up with :func:`get_method` (or the :data:`METHODS` dict); ``spec.supports(model, n_features)``
returns None or the reason the method cannot explain that model (``n_features``: the number of ranked
features, i.e. pixels for images). Budgets (samples, steps, evaluations) are in ``spec.budget`` and are
passed to the method as keyword arguments; ``dataclasses.replace(spec, budget={...})`` changes them.

Image inputs: Captum's perturbation methods perturb whole pixels (all channels together, through a
``feature_mask``); shap's model-agnostic explainers see the flattened elements, which are pixels for the
one-channel datasets used here.

Amortised methods (FastSHAP) must be trained for the model before they explain it: a runner calls
``spec.prepare_for(model, X_train, background=..., seed=..., cache_dir=...)`` once per explained model before
its attributions (a no-op returning ``{}`` for every other method). It returns what the training cost
(``training_seconds``, ``model_evaluations``), which runners report apart from the time per explanation.

Register a new method with :func:`register_method` (duplicate names are rejected)::

    @register_method("my_method", library="mine", description="...", budget={"n": 10})
    def my_method(model, x, target, *, background, seed, n): ...
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import threading
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

__all__ = [
    "DEFAULT_METHODS",
    "METHODS",
    "AttributionFn",
    "MethodSpec",
    "get_method",
    "is_shapnet",
    "fastshap_explainer",
    "list_methods",
    "register_method",
]


class AttributionFn(Protocol):
    def __call__(
        self,
        model: nn.Module,
        x: torch.Tensor,
        target: torch.Tensor,
        *,
        background: torch.Tensor,
        seed: int,
        **budget: Any,
    ) -> torch.Tensor: ...


SupportsFn = Callable[[nn.Module, int], "str | None"]
#: ``prepare(model, X_train, *, background, seed, cache_dir, **budget) -> info``: trains what an amortised
#: method needs for ``model`` (see :meth:`MethodSpec.prepare_for`).
PrepareFn = Callable[..., "dict[str, Any]"]


@dataclass(frozen=True)
class MethodSpec:
    """A registered attribution method.

    Attributes:
        name: registry name (``"integrated_gradients"``).
        library: ``"shapnet"``, ``"captum"``, ``"shap"`` or ``"none"`` (the random control).
        description: what it computes, in one line.
        fn: the implementation, ``fn(model, x, target, *, background, seed, **budget)``.
        budget: keyword arguments bounding its cost (samples, steps, evaluations), recorded in outputs.
        requirement: ``(model, n_features) -> reason or None``: static reasons it cannot run.
        caveat: a known limitation worth printing next to its results (empty if none).
        prepare: for amortised methods, trains what the method needs for a model on training inputs
            (see :meth:`prepare_for`); None for every other method.
    """

    name: str
    library: str
    description: str
    fn: AttributionFn
    budget: Mapping[str, Any] = field(default_factory=dict)
    requirement: SupportsFn | None = None
    caveat: str = ""
    prepare: PrepareFn | None = None

    def prepare_for(
        self, model: nn.Module, X_train: np.ndarray | torch.Tensor, *, background: torch.Tensor | np.ndarray,
        seed: int, cache_dir: str | os.PathLike | None = None,
    ) -> dict[str, Any]:
        """Train what this method needs to explain ``model`` (an amortised explainer); ``{}`` if nothing.

        Args:
            model: the model the method will explain.
            X_train: ``(N, *input_shape)`` inputs to train on (labels are not needed).
            background: ``(M, *input_shape)`` or ``input_shape``; its first row is the reference (absent value).
            seed: seeds the training.
            cache_dir: where the trained state is cached between runs (None: this process only).

        Returns:
            ``{"training_seconds": ..., "model_evaluations": ..., "cached": bool}`` for amortised methods:
            the one-off cost, reported apart from the time per explanation.
        """
        if self.prepare is None:
            return {}
        return self.prepare(model, X_train, background=background, seed=seed, cache_dir=cache_dir,
                            **dict(self.budget))

    def supports(self, model: nn.Module, n_features: int) -> str | None:
        """None if the method can explain ``model`` with ``n_features`` ranked features, else the reason."""
        return None if self.requirement is None else self.requirement(model, n_features)

    def __call__(
        self, model: nn.Module, x: torch.Tensor, target: torch.Tensor, *, background: torch.Tensor, seed: int
    ) -> torch.Tensor:
        """Attributions ``(B, *input_shape)`` (float32, detached) of ``model(x)[b, target[b]]``.

        Raises:
            ValueError: if ``x``, ``target`` or ``background`` have the wrong shapes, or the method
                returned a wrong shape.
        """
        if not isinstance(x, torch.Tensor) or x.dim() not in (2, 4):
            raise ValueError(
                f"x must be a tensor (B, F) or (B, C, H, W), got {type(x).__name__} "
                f"{tuple(getattr(x, 'shape', ()))}."
            )
        target = torch.as_tensor(target, dtype=torch.long).reshape(-1)
        if target.shape[0] != x.shape[0]:
            raise ValueError(
                f"target must hold one index per row of x ({x.shape[0]}), got {target.shape[0]}."
            )
        background = torch.as_tensor(background, dtype=x.dtype)
        if background.dim() == x.dim() - 1:
            background = background.unsqueeze(0)
        if tuple(background.shape[1:]) != tuple(x.shape[1:]):
            raise ValueError(
                f"background must have shape (M, *input_shape) = (M, {', '.join(map(str, x.shape[1:]))}), "
                f"got {tuple(background.shape)}."
            )
        with _seeded(seed), warnings.catch_warnings():
            # Expected, and repeated on every chunk: Captum switching on requires_grad for the inputs it
            # differentiates, hooking nn.ReLU modules (DeepLift), and fitting one Lime model per row.
            warnings.filterwarnings("ignore", message=r"Input Tensor \d+ did not already require gradients")
            warnings.filterwarnings("ignore", message=r"Setting forward, backward hooks")
            warnings.filterwarnings("ignore", message=r"You are providing multiple inputs for Lime")
            # shap's Kernel SHAP with fewer coalitions than it would like (small budgets on purpose).
            warnings.filterwarnings("ignore", message=r"Linear regression equation is singular")
            out = self.fn(model, x, target, background=background, seed=seed, **dict(self.budget))
        out = torch.as_tensor(out).detach().to(torch.float32)
        if out.shape != x.shape:
            raise ValueError(
                f"method {self.name!r} returned shape {tuple(out.shape)}, expected {tuple(x.shape)}."
            )
        return out


METHODS: dict[str, MethodSpec] = {}

# Seeding the global RNGs and drawing from them must not interleave between threads of one process.
_RNG_LOCK = threading.RLock()


def register_method(
    name: str,
    *,
    library: str,
    description: str,
    budget: Mapping[str, Any] | None = None,
    requirement: SupportsFn | None = None,
    caveat: str = "",
    prepare: PrepareFn | None = None,
) -> Callable[[AttributionFn], AttributionFn]:
    """Decorator adding ``fn`` to :data:`METHODS` under ``name`` (duplicates raise ValueError)."""

    def decorator(fn: AttributionFn) -> AttributionFn:
        if name in METHODS:
            raise ValueError(f"an attribution method named {name!r} is already registered.")
        METHODS[name] = MethodSpec(name, library, description, fn, dict(budget or {}), requirement, caveat, prepare)
        return fn

    return decorator


def get_method(name: str) -> MethodSpec:
    """The registered method ``name`` (ValueError listing the valid names otherwise)."""
    try:
        return METHODS[name]
    except KeyError:
        raise ValueError(
            f"unknown attribution method {name!r}; valid methods are: {', '.join(METHODS)}."
        ) from None


def list_methods() -> list[str]:
    """Registered method names, in registration order."""
    return list(METHODS)


@contextlib.contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Seed torch's and numpy's global RNGs for the block (Captum and shap draw from them), then restore."""
    with _RNG_LOCK, torch.random.fork_rng(devices=[]):
        state = np.random.get_state()  # noqa: NPY002 (the libraries draw from numpy's global RNG)
        torch.manual_seed(int(seed))
        np.random.seed(int(seed) % 2**32)  # noqa: NPY002
        try:
            yield
        finally:
            np.random.set_state(state)  # noqa: NPY002


# --------------------------------------------------------------------------- #
# Requirements
# --------------------------------------------------------------------------- #
def is_shapnet(model: nn.Module) -> bool:
    """Whether ``model`` is a ShapNet (it has built-in Shapley values)."""
    from shapnet import ShapNet

    return isinstance(model, ShapNet)


def _needs_shapnet(model: nn.Module, n_features: int) -> str | None:
    from shapnet import is_self_explaining

    if is_self_explaining(model):
        return None
    return (
        f"needs a ShapNet or another self-explaining model (built-in Shapley values: a HarsanyiNet, a FastSHAP "
        f"wrapper); the model is a {type(model).__name__} (e.g. --model mlp explains a plain MLP, which has no "
        "built-in values; the method fastshap trains an explainer for it)"
    )


def _at_most_features(limit: int, model: nn.Module, n_features: int) -> str | None:
    if n_features <= limit:
        return None
    return f"exact enumeration needs d <= {limit} features (2**d coalitions per row), got d = {n_features}"


def _max_features(limit: int) -> SupportsFn:
    # A partial of a module-level function, not a closure: method specs pickle (Dask ships them).
    return functools.partial(_at_most_features, limit)


_NONLINEAR_MODULES = (nn.ReLU, nn.ELU, nn.Sigmoid, nn.Tanh, nn.Softplus)


# Why the DeepLift rules cannot explain a ShapNet: they rewrite the gradients of nn.ReLU (etc.) *modules*, and
# a ShapNet applies its ReLUs inside a custom autograd function. Captum would silently return plain gradient x
# (input - baseline): identical to input_x_gradient to 1e-8 on a DeepShapNet, and summation-to-delta fails.
# shap's DeepExplainer runs, but its attributions miss the prediction gap by about as much as plain gradients
# do (additivity error ~0.1 logit on a small DeepShapNet, 1e-7 on an MLP).
_DEEPLIFT_ON_A_SHAPNET = {
    "captum": "Captum's DeepLift rescale rule never applies: the result is exactly gradient x "
    "(input - baseline) (= input_x_gradient) and misses summation-to-delta; use --model mlp for DeepLift",
    "shap": "shap's DeepExplainer cannot apply its DeepLift multipliers: it runs, but its values fail its "
    "own additivity check (they do not sum to f(x) - f(background)); use --model mlp for shap_deep",
}


def _deeplift_requirement(library: str, model: nn.Module, n_features: int) -> str | None:
    if is_shapnet(model):
        return (
            "a ShapNet applies its ReLUs inside a custom autograd function, not as nn.ReLU modules, so "
            + _DEEPLIFT_ON_A_SHAPNET[library]
        )
    if not any(isinstance(m, _NONLINEAR_MODULES) for m in model.modules()):
        return (
            f"no nonlinearity modules (nn.ReLU, ...) in {type(model).__name__} for the DeepLift rules "
            "to act on"
        )
    return None


def _needs_relu_modules(library: str) -> SupportsFn:
    """The requirement of ``library``'s DeepLift: nonlinearity modules for its rules to act on (a partial of
    a module-level function, so that the method's spec pickles)."""
    return functools.partial(_deeplift_requirement, library)


# --------------------------------------------------------------------------- #
# Helpers
# --------------------------------------------------------------------------- #
def _pixel_mask(x: torch.Tensor) -> torch.Tensor | None:
    """Captum feature mask grouping the channels of each pixel, ``(1, C, H, W)``; None for tabular input."""
    if x.dim() != 4:
        return None
    _, c, h, w = x.shape
    return torch.arange(h * w).view(1, 1, h, w).expand(1, c, h, w).contiguous()


def _per_eval(x: torch.Tensor, rows: int = 4096) -> int:
    """Perturbations per forward pass so that one pass holds about ``rows`` rows."""
    return max(1, rows // max(1, x.shape[0]))


@dataclass(frozen=True)
class _Call:
    """One call of a built-in method: the arguments of :class:`AttributionFn`, its budget as a mapping."""

    model: nn.Module
    x: torch.Tensor
    target: torch.Tensor
    background: torch.Tensor
    seed: int
    budget: Mapping[str, Any]

    @property
    def baseline(self) -> torch.Tensor:
        """The first background row, ``(1, *input_shape)`` (Captum broadcasts it over the batch)."""
        return self.background[:1]

    @property
    def captum_model(self) -> nn.Module:
        # Captum's gradient methods need gradients wrt inputs only; eval mode keeps batch statistics fixed.
        return self.model.eval()


def _builtin(
    name: str, library: str, description: str | None = None, **spec: Any
) -> Callable[[Callable[[_Call], torch.Tensor]], AttributionFn]:
    """:func:`register_method` for a built-in method written as ``body(call)``: the registry's signature
    ``fn(model, x, target, *, background, seed, **budget)`` is spelled out once, here. The description is
    ``body``'s docstring unless given."""

    def decorator(body: Callable[[_Call], torch.Tensor]) -> AttributionFn:
        def method(
            model: nn.Module,
            x: torch.Tensor,
            target: torch.Tensor,
            *,
            background: torch.Tensor,
            seed: int,
            **budget: Any,
        ) -> torch.Tensor:
            return body(_Call(model, x, target, background, seed, budget))

        # The module-level name holds this function: pickle finds it by name (process pools, Dask).
        method.__name__, method.__qualname__, method.__doc__ = body.__name__, body.__qualname__, body.__doc__
        text = description if description is not None else " ".join((body.__doc__ or "").split())
        return register_method(name, library=library, description=text, **spec)(method)

    return decorator


# --------------------------------------------------------------------------- #
# ShapNet and the control
# --------------------------------------------------------------------------- #
@_builtin("shapnet", "shapnet", requirement=_needs_shapnet)
def shapnet_values(c: _Call) -> torch.Tensor:
    """the model's built-in Shapley values (one explained forward), via the Captum adapter"""
    from shapnet_adapters.captum import ShapNetAttribution

    # A one-row background is the baseline: exact for a ShallowShapNet; a Deep/Vision ShapNet raises a
    # ValueError unless it equals the model's reference (the benchmarks make both the training mean). With
    # several background rows the values are against the model's reference.
    baseline = c.baseline if c.background.shape[0] == 1 else None
    return ShapNetAttribution(c.model).attribute(c.x, baselines=baseline, target=c.target)


@_builtin("random", "none")
def random_scores(c: _Call) -> torch.Tensor:
    """i.i.d. standard normal scores: a random ranking, the control every method must beat"""
    return torch.randn(c.x.shape, generator=torch.Generator().manual_seed(int(c.seed)))


# --------------------------------------------------------------------------- #
# FastSHAP: an amortised explainer, trained once per explained model
# --------------------------------------------------------------------------- #
# Trained explainers of this process: (model weights, reference, budget) -> FastSHAP.
_FASTSHAP: dict[str, Any] = {}
# ... and by training data and seed too, with what their training cost: key -> (FastSHAP, info).
_FASTSHAP_INFO: dict[str, tuple[Any, dict[str, Any]]] = {}
_FASTSHAP_LOCK = threading.Lock()


def _fastshap_key(model: nn.Module, reference: torch.Tensor, budget: Mapping[str, Any]) -> str:
    import hashlib

    from .models import weights_hash

    digest = hashlib.sha256(weights_hash(model).encode())
    digest.update(np.ascontiguousarray(reference.detach().cpu().numpy(), dtype=np.float32).tobytes())
    digest.update(json.dumps(dict(budget), sort_keys=True, default=str).encode())
    return digest.hexdigest()[:16]


def _reference(background: torch.Tensor | np.ndarray, input_shape: tuple[int, ...]) -> torch.Tensor:
    ref = torch.as_tensor(np.asarray(background, dtype=np.float32))
    if ref.dim() == len(input_shape) + 1:
        ref = ref[0]
    if tuple(ref.shape) != input_shape:
        raise ValueError(
            f"background must be one input {input_shape} or rows (M, *{input_shape}); got {tuple(ref.shape)}."
        )
    return ref


def fastshap_explainer(
    model: nn.Module,
    X_train: np.ndarray | torch.Tensor,
    *,
    background: torch.Tensor | np.ndarray,
    seed: int = 0,
    cache_dir: str | os.PathLike | None = None,
    hidden: tuple[int, ...] = (128, 128),
    width: int = 32,
    epochs: int = 200,
    batch_size: int = 32,
    n_coalitions: int = 32,
    lr: float = 1e-3,
    patience: int = 10,
    val_fraction: float = 0.1,
    max_rows: int = 5000,
) -> tuple[Any, dict[str, Any]]:
    """A :class:`shapnet.FastSHAP` explainer trained for ``model`` against ``background``'s first row.

    Trained on at most ``max_rows`` rows of ``X_train`` (a seeded random subset), ``val_fraction`` of them
    held out for early stopping (``patience`` epochs, best weights kept); the same game as every method
    here (absent features at the reference). The explainer is kept for this process (the ``fastshap``
    method finds it by the model's weights) and, with ``cache_dir``, saved there with its cost.

    Returns:
        ``(explainer, info)``; ``info``: ``training_seconds`` and ``model_evaluations`` (of the training,
        validation included: the amortised cost), ``train_rows``, ``epochs_run``, ``cached`` (loaded
        from ``cache_dir``, no training in this call).
    """
    from shapnet import FastSHAP

    from ._common import atomic_write

    X = torch.as_tensor(np.asarray(X_train, dtype=np.float32))
    input_shape = tuple(int(s) for s in X.shape[1:])
    if len(X) < 2:
        raise ValueError(f"X_train must hold at least 2 rows to train FastSHAP, got {len(X)}.")
    reference = _reference(background, input_shape)
    budget = dict(hidden=list(hidden), width=width, epochs=epochs, batch_size=batch_size,
                  n_coalitions=n_coalitions, lr=lr, patience=patience, val_fraction=val_fraction,
                  max_rows=max_rows)
    key = _fastshap_key(model, reference, budget)
    generator = torch.Generator().manual_seed(int(seed))
    rows = torch.randperm(len(X), generator=generator)[: min(max_rows, len(X))]
    n_val = max(1, int(round(val_fraction * len(rows)))) if val_fraction > 0 else 0
    train, val = X[rows[n_val:]], (X[rows[:n_val]] if n_val else None)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        explainer = FastSHAP(model, input_shape=input_shape, reference=reference, hidden=tuple(hidden),
                             width=width)
    import hashlib

    info: dict[str, Any] = {"train_rows": len(train), "val_rows": n_val}
    data_key = hashlib.sha256(train.numpy().tobytes()).hexdigest()[:12]
    full_key = f"{key}-{data_key}-{int(seed)}"
    with _FASTSHAP_LOCK:
        if full_key in _FASTSHAP_INFO:  # trained (or loaded) earlier in this process
            _FASTSHAP[key] = _FASTSHAP_INFO[full_key][0]
            return _FASTSHAP_INFO[full_key][0], {**_FASTSHAP_INFO[full_key][1], "cached": True}
    path = None if cache_dir is None else Path(cache_dir) / f"fastshap-{full_key}"
    if path is not None and path.with_suffix(".json").exists() and path.with_suffix(".pt").exists():
        explainer.explainer.load_state_dict(torch.load(path.with_suffix(".pt"), weights_only=True))
        explainer.explainer.eval()
        info.update(json.loads(path.with_suffix(".json").read_text()), cached=True)
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))
            explainer.fit(train, X_val=val, epochs=epochs, batch_size=batch_size, n_coalitions=n_coalitions,
                          lr=lr, patience=patience)
        info.update(training_seconds=explainer.training_seconds_, model_evaluations=explainer.model_evaluations_,
                    epochs_run=len(explainer.history_), train_rows=len(train), val_rows=n_val)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(path.with_suffix(".pt"), lambda fh: torch.save(explainer.explainer.state_dict(), fh))
            atomic_write(path.with_suffix(".json"), json.dumps(info, indent=1))
        info["cached"] = False
    with _FASTSHAP_LOCK:
        _FASTSHAP[key] = explainer
        _FASTSHAP_INFO[full_key] = (explainer, info)
    return explainer, info


def _prepare_fastshap(
    model: nn.Module, X_train: np.ndarray | torch.Tensor, *, background: torch.Tensor | np.ndarray, seed: int,
    cache_dir: str | os.PathLike | None, **budget: Any,
) -> dict[str, Any]:
    return fastshap_explainer(model, X_train, background=background, seed=seed, cache_dir=cache_dir, **budget)[1]


@register_method(
    "fastshap",
    library="shapnet",
    description="FastSHAP (Jethani et al.): an explainer network trained once per model on the reference game, "
    "then one pass per explanation",
    # Small tables give few steps per epoch: up to 200 epochs, stopped early on the held-out rows (on wine, 30
    # epochs of batch 64 left a relative error of 0.30 against 0.17 when trained to convergence).
    budget={"hidden": (128, 128), "width": 32, "epochs": 200, "batch_size": 32, "n_coalitions": 32, "lr": 1e-3,
            "patience": 10, "val_fraction": 0.1, "max_rows": 5000},
    prepare=_prepare_fastshap,
    caveat="amortised: its one-off training cost (training_seconds) is reported apart from the time per sample",
)
def fastshap(
    model: nn.Module, x: torch.Tensor, target: torch.Tensor, *, background: torch.Tensor, seed: int, **budget: Any
) -> torch.Tensor:
    key = _fastshap_key(model, _reference(background, tuple(x.shape[1:])), {**budget, "hidden": list(budget["hidden"])})
    with _FASTSHAP_LOCK:
        explainer = _FASTSHAP.get(key)
    if explainer is None:
        raise ValueError(
            "fastshap is amortised: train its explainer for this model and reference first with "
            "get_method('fastshap').prepare_for(model, X_train, background=reference, seed=...) (the benchmarks "
            "that support it do this before explaining)."
        )
    with torch.no_grad():
        values = explainer.explain(x).per_element()  # (B, *input_shape, K)
    return values[torch.arange(x.shape[0]), ..., target]




# --------------------------------------------------------------------------- #
# Captum: gradients
# --------------------------------------------------------------------------- #
@_builtin("saliency", "captum")
def saliency(c: _Call) -> torch.Tensor:
    """|d output / d input| (Simonyan et al.)"""
    from captum.attr import Saliency

    return Saliency(c.captum_model).attribute(c.x, target=c.target, abs=True)


@_builtin("input_x_gradient", "captum")
def input_x_gradient(c: _Call) -> torch.Tensor:
    """(input - baseline) x gradient at the input"""
    from captum.attr import Saliency

    # Captum's InputXGradient multiplies by the raw input (baseline 0); multiplying the gradient by
    # (x - baseline) explains the same game as the others (identical when the baseline is 0).
    grad = Saliency(c.captum_model).attribute(c.x, target=c.target, abs=False)
    return grad * (c.x - c.baseline)


@_builtin("integrated_gradients", "captum", budget={"n_steps": 32})
def integrated_gradients(c: _Call) -> torch.Tensor:
    """path integral of gradients from the baseline (Sundararajan et al.), Gauss-Legendre"""
    from captum.attr import IntegratedGradients

    return IntegratedGradients(c.captum_model).attribute(
        c.x,
        baselines=c.baseline,
        target=c.target,
        n_steps=c.budget["n_steps"],
        internal_batch_size=max(c.x.shape[0], 1) * 8,
    )


def _noise_tunnel(nt_type: str, description: str) -> AttributionFn:
    """Register Captum's NoiseTunnel over signed gradients as ``nt_type`` (smoothgrad_sq squares them,
    vargrad takes their variance, as in Hooker et al.)."""

    @_builtin(nt_type, "captum", description, budget={"nt_samples": 16, "stdevs": 0.5})
    def noise_tunnel(c: _Call) -> torch.Tensor:
        from captum.attr import NoiseTunnel, Saliency

        # stdevs in standardised units: about 15 % of a standardised feature's typical range (SmoothGrad's
        # advice).
        samples = c.budget["nt_samples"]
        return NoiseTunnel(Saliency(c.captum_model)).attribute(
            c.x,
            nt_type=nt_type,
            nt_samples=samples,
            nt_samples_batch_size=samples,
            stdevs=c.budget["stdevs"],
            target=c.target,
            abs=False,
        )

    noise_tunnel.__name__ = noise_tunnel.__qualname__ = nt_type  # the module-level name: it pickles
    return noise_tunnel


smoothgrad_sq = _noise_tunnel(
    "smoothgrad_sq", "mean of squared gradients under Gaussian input noise (NoiseTunnel); a ROAR winner"
)
vargrad = _noise_tunnel(
    "vargrad", "variance of gradients under Gaussian input noise (NoiseTunnel); a ROAR winner"
)


@_builtin("gradient_shap", "captum", budget={"n_samples": 16})
def gradient_shap(c: _Call) -> torch.Tensor:
    """expected gradients x (input - baseline) at random points on the path (GradientShap)"""
    from captum.attr import GradientShap

    return GradientShap(c.captum_model).attribute(
        c.x, baselines=c.background, target=c.target, n_samples=c.budget["n_samples"]
    )


@_builtin("deeplift", "captum", requirement=_needs_relu_modules("captum"))
def deeplift(c: _Call) -> torch.Tensor:
    """DeepLift rescale rule against the baseline (Captum)"""
    from captum.attr import DeepLift

    return DeepLift(c.captum_model).attribute(c.x, baselines=c.baseline, target=c.target)


@_builtin("deeplift_shap", "captum", requirement=_needs_relu_modules("captum"))
def deeplift_shap(c: _Call) -> torch.Tensor:
    """DeepLift averaged over the background rows (DeepLiftShap); with one row it equals deeplift"""
    from captum.attr import DeepLiftShap

    # DeepLiftShap insists on at least two baseline rows; repeating a single row is the same average.
    rows = c.background if c.background.shape[0] > 1 else c.background.expand(2, *c.background.shape[1:])
    return DeepLiftShap(c.captum_model).attribute(c.x, baselines=rows, target=c.target)


# --------------------------------------------------------------------------- #
# Captum: perturbations (whole pixels for images)
# --------------------------------------------------------------------------- #
def _perturbation(captum_class: str, name: str, description: str, **budget: int) -> AttributionFn:
    """Register Captum's perturbation method ``captum_class`` (a class of ``captum.attr``) as ``name``:
    against the baseline row, whole pixels for images. Kernel SHAP and LIME fit one model per row on its
    ``n_samples`` perturbations, which one forward pass then holds; the others take about 4096 rows a pass."""
    fits_per_row = captum_class in ("KernelShap", "Lime")

    @_builtin(name, "captum", description, budget=budget)
    def perturbation(c: _Call) -> torch.Tensor:
        import captum.attr

        per_eval = c.budget["n_samples"] if fits_per_row else _per_eval(c.x)
        with torch.no_grad():
            return getattr(captum.attr, captum_class)(c.model).attribute(
                c.x,
                baselines=c.baseline,
                target=c.target,
                feature_mask=_pixel_mask(c.x),
                perturbations_per_eval=per_eval,
                **c.budget,
            )

    perturbation.__name__ = perturbation.__qualname__ = name  # the module-level name: it pickles
    return perturbation


feature_ablation = _perturbation(
    "FeatureAblation",
    "feature_ablation",
    "output drop when one feature (pixel) is set to the baseline (occlusion)",
)
shapley_value_sampling = _perturbation(
    "ShapleyValueSampling",
    "shapley_value_sampling",
    "Shapley values from random feature permutations against the baseline (Captum)",
    n_samples=10,
)
kernel_shap = _perturbation(
    "KernelShap",
    "kernel_shap",
    "Kernel SHAP: weighted linear fit on random coalitions, per row (Captum)",
    n_samples=200,
)
lime = _perturbation(
    "Lime", "lime", "LIME: Lasso fit on random binary perturbations, per row (Captum defaults)", n_samples=200
)


# --------------------------------------------------------------------------- #
# shap
# --------------------------------------------------------------------------- #
def _numpy_model(model: nn.Module, input_shape: tuple[int, ...]) -> Callable[[np.ndarray], np.ndarray]:
    """``f(X) -> logits`` for shap: ``X`` ``(N, prod(input_shape))`` (any float dtype) to ``(N, O)``
    float64."""

    def f(X: np.ndarray) -> np.ndarray:
        # shap's maskers hand over float64; the model is float32.
        flat = torch.as_tensor(np.asarray(X, dtype=np.float32))
        out = []
        with torch.no_grad():
            for start in range(0, len(flat), 8192):
                out.append(model(flat[start : start + 8192].view(-1, *input_shape)))
        return torch.cat(out).double().numpy() if out else np.zeros((0, 0))

    return f


def _select(values: np.ndarray, target: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """``values`` ``(B, F, O)`` -> the target's column ``(B, *input_shape)``; ``(B, F)`` (shap drops ``O``
    for single-output models) is taken as it is."""
    values = np.asarray(values)
    if values.ndim == 3:
        values = values[np.arange(values.shape[0]), :, target.numpy()]
    return torch.as_tensor(values.astype(np.float32)).view(-1, *shape)


def _shap(
    c: _Call, explain: Callable[[Callable[[np.ndarray], np.ndarray], np.ndarray], np.ndarray]
) -> torch.Tensor:
    """A shap explainer on the flattened rows: ``explain(f, X (B, E))`` returns values ``(B, E[, O])``;
    the target's column, ``(B, *input_shape)``."""
    shape = tuple(c.x.shape[1:])
    values = explain(_numpy_model(c.model, shape), c.x.reshape(c.x.shape[0], -1).numpy())
    return _select(values, c.target, shape)


def _shap_masker(background: torch.Tensor) -> Any:
    import shap

    return shap.maskers.Independent(background.reshape(background.shape[0], -1).numpy(), max_samples=100)


@_builtin("shap_exact", "shap", requirement=_max_features(15))
def shap_exact(c: _Call) -> torch.Tensor:
    """exact Shapley values over all 2**d coalitions against the background (shap Exact)"""
    import shap

    def explain(f: Callable[[np.ndarray], np.ndarray], flat: np.ndarray) -> np.ndarray:
        explainer = shap.explainers.Exact(f, _shap_masker(c.background))
        return explainer(flat, max_evals=2 ** flat.shape[1] + 1, silent=True).values

    return _shap(c, explain)


@_builtin("shap_permutation", "shap", budget={"permutations": 5})
def shap_permutation(c: _Call) -> torch.Tensor:
    """Shapley values from antithetic feature permutations (shap Permutation)"""
    import shap

    def explain(f: Callable[[np.ndarray], np.ndarray], flat: np.ndarray) -> np.ndarray:
        explainer = shap.explainers.Permutation(f, _shap_masker(c.background), seed=int(c.seed))
        # shap spends (2 d + 1) evaluations per permutation (forward and backward pass over it).
        evals = c.budget["permutations"] * (2 * flat.shape[1] + 1)
        return explainer(flat, max_evals=evals, silent=True).values

    return _shap(c, explain)


@_builtin("shap_kernel", "shap", budget={"nsamples": 200})
def shap_kernel(c: _Call) -> torch.Tensor:
    """Kernel SHAP: weighted linear fit on sampled coalitions against the background (shap Kernel)"""
    import shap

    def explain(f: Callable[[np.ndarray], np.ndarray], flat: np.ndarray) -> np.ndarray:
        explainer = shap.KernelExplainer(f, c.background.reshape(c.background.shape[0], -1).numpy())
        # l1_reg=False: plain Kernel SHAP (shap's default would keep only 10 features).
        return explainer.shap_values(flat, nsamples=c.budget["nsamples"], silent=True, l1_reg=False)

    return _shap(c, explain)


@_builtin("shap_deep", "shap", requirement=_needs_relu_modules("shap"))
def shap_deep(c: _Call) -> torch.Tensor:
    """DeepLift-style attributions with the background as reference (shap DeepExplainer)"""
    import shap

    explainer = shap.DeepExplainer(c.model.eval(), c.background)
    values = explainer.shap_values(c.x, check_additivity=False)  # (B, *input_shape, K)
    values = np.asarray(values).reshape(c.x.shape[0], -1, np.asarray(values).shape[-1])
    return _select(values, c.target, tuple(c.x.shape[1:]))



#: The default set of ``python -m benchmarks roar``: the method under test, the control, the two ROAR
#: winners of Hooker et al., Integrated Gradients (the same baseline, a path method) and Captum's
#: permutation-sampling Shapley values (a model-agnostic estimate of the same game ShapNet computes).
DEFAULT_METHODS: tuple[str, ...] = (
    "shapnet",
    "random",
    "smoothgrad_sq",
    "vargrad",
    "integrated_gradients",
    "shapley_value_sampling",
)
