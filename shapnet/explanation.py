"""The result of ``model.explain(x)``."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

__all__ = ["ShapleyExplanation"]


@dataclass
class ShapleyExplanation:
    """Shapley values of a ShapNet's prediction, computed in its forward pass.

    Attributes:
        values: ``(B, F, K)`` for tabular models; ``(B, H, W, K)`` per pixel for images.
        base_values: ``(B, K)``: the prediction at the reference (or at the explain-time baseline).
        predictions: ``(B, K)``: the prediction at ``x``; ``values`` sum to ``predictions - base_values``.
        input_shape: the shape of one input sample, ``(F,)`` or ``(C, H, W)``.
        layers: per-layer representations ``Phi^(l)`` (``(B, F, C_l)`` or ``(B, H, W, C_l)``) when asked for.
        skipped: for pruned models, the fraction of module evaluations skipped in the layers that pruning
            can reach (all but the first); else None.
        skipped_layers: for pruned models, that fraction per layer, first layer included; else None.
    """

    values: torch.Tensor
    base_values: torch.Tensor
    predictions: torch.Tensor
    input_shape: tuple[int, ...]
    layers: list[torch.Tensor] | None = field(default=None, repr=False)
    skipped: float | None = None
    skipped_layers: tuple[float, ...] | None = None

    def per_element(self) -> torch.Tensor:
        """Attributions per input element, ``(B, *input_shape, K)``.

        For images, each pixel's value is split equally over its ``C`` channels, so the attributions of
        the ``C * H * W`` elements still sum to ``predictions - base_values``. Tabular values are returned
        unchanged.
        """
        if len(self.input_shape) == 1:
            return self.values
        channels = self.input_shape[0]
        per_pixel = self.values.unsqueeze(1) / channels  # (B, 1, H, W, K)
        return per_pixel.expand(-1, channels, -1, -1, -1)

    def efficiency_error(self) -> torch.Tensor:
        """``(B, K)``: ``sum(values) - (predictions - base_values)``; zero up to rounding."""
        dims = tuple(range(1, self.values.dim() - 1))
        return self.values.sum(dims) - (self.predictions - self.base_values)

    def __getitem__(self, index: int | slice | torch.Tensor) -> ShapleyExplanation:
        """Select samples, e.g. ``explanation[:5]``."""
        if isinstance(index, int):
            index = slice(index, index + 1 or None)  # -1 -> slice(-1, None), the last row
        return ShapleyExplanation(
            self.values[index],
            self.base_values[index],
            self.predictions[index],
            self.input_shape,
            None if self.layers is None else [layer[index] for layer in self.layers],
            self.skipped,
            self.skipped_layers,
        )

    def __len__(self) -> int:
        return self.values.shape[0]

    def detach(self) -> ShapleyExplanation:
        return ShapleyExplanation(
            self.values.detach(),
            self.base_values.detach(),
            self.predictions.detach(),
            self.input_shape,
            None if self.layers is None else [layer.detach() for layer in self.layers],
            self.skipped,
            self.skipped_layers,
        )
