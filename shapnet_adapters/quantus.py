"""A ShapNet as a Quantus explanation function: ``explain_func=explain_func`` in any Quantus metric.

Quantus calls ``explain_func(model=..., inputs=..., targets=..., **explain_func_kwargs)`` once per batch,
with channel-first numpy inputs, and needs back a numpy array with the inputs' batch size and rank. The
model it passes is the raw torch module (or, in some code paths, its ``quantus`` wrapper), and the
randomisation metrics pass randomised copies: so :func:`explain_func` explains the model it is given.

Quantus does not import here: this module only needs numpy and torch.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from shapnet import ShapNet

__all__ = ["TabularAsImage", "explain_func", "auc"]


class TabularAsImage(nn.Module):
    """Show a tabular ShapNet to Quantus as a one-row, one-channel image.

    Several Quantus metrics (FaithfulnessCorrelation, RegionPerturbation, Selectivity, ...) index inputs
    as ``(B, C, ...)`` and break on plain ``(B, F)`` tables. Wrap the model and reshape the data to
    ``(B, 1, F)``; :func:`explain_func` unwraps it and returns attributions of shape ``(B, 1, F)``.

    Args:
        model: a tabular ShapNet (input shape ``(F,)``). The wrapper starts in the model's mode
            (``train``/``eval``); Quantus needs ``eval``.

    Shape:
        ``x``: ``(B, 1, F)``; output: ``(B, K)``, the wrapped model's logits.
    """

    def __init__(self, model: ShapNet) -> None:
        super().__init__()
        if not isinstance(model, ShapNet) or len(model.input_shape) != 1:
            got = type(model).__name__ + (
                f" with input shape {model.input_shape}" if isinstance(model, ShapNet) else ""
            )
            raise TypeError(f"TabularAsImage wraps a tabular ShapNet (input shape (F,)), got {got}.")
        self.model = model
        # A new module starts in training mode, and quantus.PyTorchModel refuses to predict with a model
        # in training mode: inherit the wrapped model's mode instead.
        self.train(model.training)

    @property
    def input_shape(self) -> tuple[int, int]:
        """``(1, F)``: the per-sample shape this wrapper takes."""
        return (1, self.model.input_shape[0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or x.dim() != 3 or tuple(x.shape[1:]) != self.input_shape:
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(
                f"TabularAsImage expects x of shape (B, 1, {self.model.input_shape[0]}), got {got}. "
                "Reshape the table with X.reshape(len(X), 1, -1)."
            )
        return self.model(x.reshape(x.shape[0], -1))


def explain_func(
    model: nn.Module,
    inputs: np.ndarray | torch.Tensor,
    targets: np.ndarray | torch.Tensor | int | None,
    *,
    baseline: object = None,
    device: str | torch.device | None = None,
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

    Returns:
        ``np.ndarray`` of the inputs' shape and the model's float dtype: per element; for images each
        pixel's value is split equally over its channels, so the elements sum to
        ``F(x)[target] - F(reference)[target]``.
    """
    shapnet, flatten = _unwrap(model)
    reference = shapnet.reference
    x = torch.as_tensor(np.asarray(inputs) if not isinstance(inputs, torch.Tensor) else inputs)
    if x.is_complex():  # casting to the model's dtype would drop the imaginary part silently
        raise TypeError(f"inputs must hold real numbers, got dtype {x.dtype}.")
    x = x.to(device=reference.device if device is None else device, dtype=reference.dtype)
    batch = x.shape[0]
    if flatten:
        if x.dim() != 3 or x.shape[1] != 1:
            raise ValueError(
                f"a TabularAsImage model takes inputs of shape (B, 1, F), got {tuple(x.shape)}. "
                "Reshape the table with X.reshape(len(X), 1, -1)."
            )
        x = x.reshape(batch, -1)
    rows = _target_indices(targets, batch, shapnet.n_outputs).to(x.device)
    with torch.no_grad():
        per_element = shapnet.explain(x, baseline=baseline).per_element()  # (B, *input_shape, K)
        index = rows.view(-1, *([1] * (per_element.dim() - 1))).expand(*per_element.shape[:-1], 1)
        attributions = per_element.gather(-1, index).squeeze(-1)  # (B, *input_shape)
    if flatten:
        attributions = attributions.unsqueeze(1)  # (B, 1, F)
    return attributions.detach().cpu().numpy()


def auc(curves: object, dx: float = 1.0) -> np.ndarray:
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


def _unwrap(model: object) -> tuple[ShapNet, bool]:
    """The ShapNet inside ``model`` and whether its inputs arrive as ``(B, 1, F)``."""
    if not isinstance(model, nn.Module) and callable(getattr(model, "get_model", None)):
        model = model.get_model()  # a quantus ModelInterface (e.g. quantus.PyTorchModel)
    if isinstance(model, TabularAsImage):
        return model.model, True
    if isinstance(model, ShapNet):
        return model, False
    raise TypeError(
        "explain_func needs a ShapNet, a shapnet_adapters.quantus.TabularAsImage, or a Quantus wrapper of "
        f"one, got {type(model).__name__}. Pass the ShapNet (or TabularAsImage(shapnet)) as the metric's model."
    )


def _target_indices(targets: object, batch: int, n_outputs: int) -> torch.Tensor:
    """``(B,)`` int64 output indices from Quantus' ``targets`` (an array of B labels or one int)."""
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
    if np.issubdtype(array.dtype, np.floating):
        if not np.all(array == np.round(array)):
            raise TypeError("targets must be integer class indices, got non-integer floats.")
    array = array.astype(np.int64).reshape(-1)
    if np.any((array < -n_outputs) | (array >= n_outputs)):  # before broadcasting: an empty batch too
        raise ValueError(f"targets must lie in [{-n_outputs}, {n_outputs - 1}], got {sorted(set(array.tolist()))}.")
    if array.size == 1:
        array = np.full(batch, array[0])
    if array.size != batch:
        raise ValueError(f"targets must hold one index or one index per row ({batch}), got {array.size}.")
    return torch.from_numpy(array % n_outputs)
