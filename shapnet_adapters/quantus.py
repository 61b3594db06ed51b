"""A ShapNet as a Quantus explanation function: ``explain_func=explain_func`` in any Quantus metric.

Quantus calls ``explain_func(model=..., inputs=..., targets=..., **explain_func_kwargs)`` once per batch,
with channel-first numpy inputs, and needs back a numpy array with the inputs' batch size and rank. The
model it passes is the raw torch module (or, in some code paths, its ``quantus`` wrapper), and the
randomisation metrics pass randomised copies: so :func:`explain_func` explains the model it is given.

Quantus is imported only for :class:`Completeness` (on first use): :func:`explain_func` and the wrappers
need only numpy and torch. docs/ecosystem/quantus.md lists every Quantus 0.6 metric and how it runs.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from shapnet import SelfExplaining, ShapNet, is_self_explaining, output_indices

from ._unwrap import as_shapnet

__all__ = [
    "METHOD_NAMES",
    "Completeness",  # noqa: F822  (built on first use by the module __getattr__)
    "InputShift",
    "QuantusModel",
    "TabularAsImage",
    "auc",
    "explain_func",
]

#: Values of ``explain_func_kwargs["method"]`` that name this explanation (case-insensitive).
METHOD_NAMES = ("shapnet", "shapley", "shapnet_shapley")


class InputShift(nn.Module):
    """``x + bias`` per channel, ``bias`` starting at 0: a first layer with the ``out_channels`` and ``bias``
    that Quantus' ``InputInvariance`` rewrites (its ``add_mean_shift_to_first_layer``).

    Quantus shifts the inputs by ``m`` and sets ``bias = -m``, so the model behind sees the unshifted input.
    The ShapNet then explains the same point against the same reference: Shapley values are input invariant.

    Args:
        channels: ``C`` (1 for tables shown as ``(B, 1, F)``).
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.out_channels = channels
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` ``(B, C, ...)`` -> ``x + bias`` over the channel axis."""
        return x + self.bias.view(1, -1, *([1] * (x.dim() - 2))).to(x)


class QuantusModel(nn.Module):
    """A ShapNet in the form every Quantus metric can use.

    Tabular models are shown as one-row, one-channel images, ``(B, 1, F)``: several Quantus metrics
    (FaithfulnessCorrelation, RegionPerturbation, Selectivity, ...) index inputs as ``(B, C, ...)`` and break
    on plain ``(B, F)`` tables. Every model gets an :class:`InputShift` as its first layer, which
    ``InputInvariance`` needs. :func:`explain_func` unwraps the wrapper and returns attributions in the
    wrapper's input layout.

    Args:
        model: a ShapNet (or one wrapped in ``nn.DataParallel`` / ``DistributedDataParallel``). The wrapper
            starts in the model's mode (``train``/``eval``); Quantus needs ``eval``.

    Shape:
        ``x``: ``(B, 1, F)`` for tables (``(B, 1, 1, F)``, which some metrics make of it, too),
        ``(B, C, H, W)`` for images; output: ``(B, K)`` logits.
    """

    def __init__(self, model: ShapNet | nn.Module) -> None:
        super().__init__()
        shapnet = as_shapnet(model, type(self).__name__)
        # Registered first: Quantus' InputInvariance edits the first module in named_modules order.
        self.shift = InputShift(1 if len(shapnet.input_shape) == 1 else shapnet.input_shape[0])
        self.model = shapnet
        # A new module starts in training mode, and quantus.PyTorchModel refuses to predict with a model
        # in training mode: inherit the wrapped model's mode instead.
        self.train(shapnet.training)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The per-sample shape this wrapper takes: ``(1, F)`` for tables, ``(C, H, W)`` for images."""
        shape = self.model.input_shape
        return (1, shape[0]) if len(shape) == 1 else tuple(shape)

    def model_input(self, x: torch.Tensor) -> torch.Tensor:
        """What the ShapNet sees: the shifted input, ``(B, F)`` for tables."""
        shape = tuple(x.shape[1:]) if isinstance(x, torch.Tensor) else None
        if (
            shape is not None
            and len(self.model.input_shape) == 1
            and shape == (1, 1, self.model.input_shape[0])
        ):
            x = x.reshape(x.shape[0], *self.input_shape)  # (B, 1, 1, F): Quantus' image reshape of a table
        elif shape != self.input_shape:
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            hint = (
                " Reshape the table with X.reshape(len(X), 1, -1)."
                if len(self.model.input_shape) == 1
                else ""
            )
            raise ValueError(
                f"{type(self).__name__} expects x of shape (B, {', '.join(map(str, self.input_shape))}), "
                f"got {got}.{hint}"
            )
        z = self.shift(x)
        return z.reshape(z.shape[0], -1) if len(self.model.input_shape) == 1 else z

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(self.model_input(x))


class TabularAsImage(QuantusModel):
    """:class:`QuantusModel` for a tabular ShapNet (input shape ``(F,)``), shown to Quantus as ``(B, 1, F)``."""

    def __init__(self, model: ShapNet | nn.Module) -> None:
        shapnet = (
            model.module
            if isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel))
            else model
        )
        if not is_self_explaining(shapnet) or len(shapnet.input_shape) != 1:
            got = type(model).__name__ + (
                f" with input shape {shapnet.input_shape}" if is_self_explaining(shapnet) else ""
            )
            raise TypeError(f"TabularAsImage wraps a tabular ShapNet (input shape (F,)), got {got}.")
        super().__init__(model)


def explain_func(
    model: nn.Module,
    inputs: np.ndarray | torch.Tensor,
    targets: np.ndarray | torch.Tensor | int | None,
    *,
    baseline: object = None,
    device: str | torch.device | None = None,
    method: str | None = None,
    softmax: bool | None = None,
    channel_first: bool | None = None,
    reduce_axes: tuple[int, ...] | None = None,
    keepdims: bool = True,
) -> np.ndarray:
    """A ShapNet's own Shapley values, in the layout Quantus expects.

    Args:
        model: a ShapNet, a :class:`TabularAsImage`, or a Quantus model wrapper around either (anything
            with ``get_model()``, e.g. ``quantus.PyTorchModel``).
        inputs: ``(B, *input_shape)``: ``(B, F)`` tabular, ``(B, 1, F)`` through :class:`TabularAsImage`,
            ``(B, C, H, W)`` images (channel-first).
        targets: the output to explain per row: ``(B,)`` integers, or one int for every row. None only for
            single-output models.
        baseline: passed to ``model.explain`` (exact for any baseline on a ShallowShapNet; Deep/Vision
            ShapNets accept only their own reference). Set it through ``explain_func_kwargs``.
        device: the device of the inputs; Quantus fills it in when the metric is given ``device=``
            (the model must already be there, as Quantus' own wrapper puts it). Default: the model's device.
        method: as in ``quantus.explain``'s ``explain_func_kwargs={"method": ...}``: None or a name of this
            explanation (one of :data:`METHOD_NAMES`, any case). Another method's name raises ValueError (it
            would be silently ignored otherwise): use ``quantus.explain`` for other methods.
        softmax: None or False: the values explain the logits. True (values of softmax outputs) raises.
        channel_first: None or True: inputs are channel-first, as the model takes them.
        reduce_axes: sum the attributions over these axes (``quantus.explain``'s ``reduce_axes``), e.g.
            ``(1,)`` for one value per pixel; ``keepdims`` keeps them as size 1 (default, as Quantus).

    Returns:
        ``np.ndarray`` of the inputs' shape and the model's float dtype: per element; for images each
        pixel's value is split equally over its channels, so the elements sum to
        ``F(x)[target] - F(reference)[target]``.
    """
    _check_quantus_kwargs(method, softmax, channel_first)
    shapnet, wrapper = _unwrap(model)
    reference = shapnet.reference
    x = torch.as_tensor(np.asarray(inputs) if not isinstance(inputs, torch.Tensor) else inputs)
    if x.is_complex():  # casting to the model's dtype would drop the imaginary part silently
        raise TypeError(f"inputs must hold real numbers, got dtype {x.dtype}.")
    x = x.to(device=reference.device if device is None else device, dtype=reference.dtype)
    shape, batch = x.shape, x.shape[0]
    rows = _target_indices(targets, batch, shapnet.n_outputs).to(x.device)
    with torch.no_grad():
        if wrapper is not None:
            x = wrapper.model_input(x)  # shifted (InputInvariance) and, for tables, (B, F)
        per_element = shapnet.explain(x, baseline=baseline).per_element()  # (B, *input_shape, K)
        index = rows.view(-1, *([1] * (per_element.dim() - 1))).expand(*per_element.shape[:-1], 1)
        attributions = per_element.gather(-1, index).squeeze(-1).reshape(shape)  # the inputs' layout
    out = attributions.detach().cpu().numpy()
    if reduce_axes:
        out = out.sum(axis=tuple(reduce_axes), keepdims=keepdims)
    return out


def auc(curves: object, dx: float = 1.0) -> np.ndarray | np.float64:
    """Area under each curve by the trapezoidal rule, as Quantus' AUC helper computes it.

    NumPy 2.4 removed ``np.trapz``, which Quantus 0.6 still calls for ``PixelFlipping``'s
    ``return_auc_per_sample=True``, its ``get_auc_score`` and for IROF. Keep the default
    ``return_auc_per_sample=False`` (the metric then returns one curve per sample) and integrate here.

    Args:
        curves: one curve ``(T,)`` or a batch of curves ``(B, T)`` (e.g. what ``PixelFlipping`` returns).
        dx: spacing between the curve's points (Quantus uses 1).

    Returns:
        ``()`` for one curve, ``(B,)`` for a batch.
    """
    values = np.asarray(curves, dtype=np.float64)
    if values.ndim not in (1, 2) or values.shape[-1] < 1:
        raise ValueError(f"curves must have shape (T,) or (B, T), got {values.shape}.")
    return np.trapezoid(values, dx=dx, axis=-1)


def _unwrap(model: object) -> tuple[SelfExplaining, QuantusModel | None]:
    """The ShapNet inside ``model``, and the :class:`QuantusModel` around it (None if there is none)."""
    get_model = getattr(model, "get_model", None)
    if not isinstance(model, nn.Module) and callable(get_model):
        model = get_model()  # a quantus ModelInterface (e.g. quantus.PyTorchModel)
    if isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
        model = model.module
    if isinstance(model, QuantusModel):
        return model.model, model
    try:
        return as_shapnet(model, "explain_func"), None
    except TypeError as err:
        raise TypeError(
            f"{err} Pass the ShapNet (or QuantusModel(shapnet), TabularAsImage(shapnet)) as the metric's model."
        ) from None


def _check_quantus_kwargs(method: object, softmax: object, channel_first: object) -> None:
    if method is not None and (not isinstance(method, str) or method.lower() not in METHOD_NAMES):
        raise ValueError(
            f"explain_func returns the ShapNet's own Shapley values, but explain_func_kwargs asks for "
            f"method={method!r}. Pass method=None or one of {list(METHOD_NAMES)}; for another method use "
            "explain_func=quantus.explain."
        )
    if softmax:
        raise ValueError(
            "softmax=True asks for explanations of the softmax outputs; a ShapNet's Shapley values explain its "
            "logits (additively, exactly). Pass softmax=False to the metric and explain_func_kwargs."
        )
    if channel_first is not None and not channel_first:
        raise ValueError("channel_first=False: explain_func takes channel-first inputs, as the model does.")


def _target_indices(targets: object, batch: int, n_outputs: int) -> torch.Tensor:
    """``(B,)`` int64 output indices from Quantus' ``targets`` (an array of B labels or one int).

    Quantus passes ``y_batch`` as it was given, often as float labels: whole-number floats are read as
    indices and the array is flattened here; :func:`shapnet.output_indices` reads and checks the rest.
    """
    if targets is None:
        if n_outputs == 1:
            return torch.zeros(batch, dtype=torch.long)
        raise ValueError(
            f"targets=None is ambiguous for a model with K = {n_outputs} outputs: pass y_batch (one label "
            "per row) to the metric."
        )
    array = np.asarray(targets.detach().cpu() if isinstance(targets, torch.Tensor) else targets)
    if array.dtype == bool or not np.issubdtype(array.dtype, np.number):
        raise TypeError(f"targets must be integer class indices, got dtype {array.dtype}.")
    if np.issubdtype(array.dtype, np.floating) and not np.all(array == np.round(array)):
        raise TypeError("targets must be integer class indices, got non-integer floats.")
    indices = output_indices(array.astype(np.int64).reshape(-1), batch, n_outputs, name="targets")
    return torch.full((batch,), indices, dtype=torch.long) if isinstance(indices, int) else indices


def __getattr__(name: str) -> object:
    if name == "Completeness":  # built on first use, so that importing this module does not import Quantus
        value = _completeness_class()
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _completeness_class() -> type:
    import quantus

    # Quantus marks its metrics @final; this subclass changes only the comparison's tolerance.
    class Completeness(quantus.Completeness):  # type: ignore[misc]
        """``quantus.Completeness`` with a tolerance: Quantus 0.6 compares ``sum(a) == f(x) - f(baseline)``
        with ``==``, which float rounding fails (an efficiency error of 1e-7 scores False).

        Args:
            rtol, atol: as in ``numpy.isclose`` (defaults 1e-5, 1e-5).
            **kwargs: ``quantus.Completeness``'s arguments.
        """

        def __init__(self, *args: Any, rtol: float = 1e-5, atol: float = 1e-5, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.rtol, self.atol = float(rtol), float(atol)

        def evaluate_batch(self, model, x_batch, y_batch, a_batch, **kwargs):
            batch = x_batch.shape[0]
            flat = x_batch.reshape(batch, -1)
            indices = np.tile(np.arange(flat.shape[1]), (batch, 1))
            x_baseline = self.perturb_func(arr=flat, indices=indices).reshape(x_batch.shape)
            rows = np.arange(batch)
            shaped = model.shape_input(x_batch, x_batch.shape, channel_first=True, batched=True)
            y_pred = model.predict(shaped)[rows, y_batch]
            shaped = model.shape_input(x_baseline, x_batch.shape, channel_first=True, batched=True)
            y_base = model.predict(shaped)[rows, y_batch]
            total = a_batch.reshape(batch, -1).sum(axis=-1)
            return np.isclose(total, self.output_func(y_pred - y_base), rtol=self.rtol, atol=self.atol)

    Completeness.__module__ = __name__
    return Completeness
