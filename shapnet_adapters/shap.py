"""A ShapNet as a shap explainer: ``ShapNetExplainer(model)(X)`` returns a :class:`shap.Explanation`.

One batched explained forward pass explains the whole input (shap's generic path loops row by row and
evaluates the model on many masked copies of each row); the values are the model's own Shapley values.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import shap
import torch

from shapnet import ShapNet, ShapleyExplanation

__all__ = ["ShapNetExplainer"]


class ShapNetExplainer(shap.Explainer):
    """shap explainer returning a ShapNet's own Shapley values.

    ``explainer(X)`` gives a :class:`shap.Explanation` with ``values`` ``(B, *input_shape, K)``,
    ``base_values`` ``(B, K)`` (the prediction at the model's reference), ``data`` (``X`` as an array),
    ``feature_names``, ``output_names`` and ``compute_time``. Slice it as the plots expect, e.g.
    ``shap.plots.waterfall(ex[0, :, k])``, ``shap.plots.beeswarm(ex[:, :, k])``. For images,
    :meth:`image_explanation` gives the channel-last layout that ``shap.plots.image`` draws.

    The explainer's ``masker`` uses the model's reference as its single background sample (an
    ``Independent`` masker for tabular models, an ``Image`` masker for images), and :meth:`model_output`
    wraps the model as a numpy function with one scalar per row: together they plug into
    ``shap.benchmark.ExplanationError`` and ``SequentialMasker`` so that the benchmark plays the same game
    the ShapNet explains.

    Args:
        model: a ShapNet (Shallow, Deep or Vision).
        feature_names: ``F`` names for tabular models; by default the columns of a DataFrame ``X``.
        output_names: ``K`` names of the outputs (e.g. class names).
    """

    def __init__(
        self,
        model: ShapNet,
        *,
        feature_names: Sequence[str] | None = None,
        output_names: Sequence[str] | None = None,
    ) -> None:
        if not isinstance(model, ShapNet):
            raise TypeError(
                "ShapNetExplainer needs a ShapNet (ShallowShapNet, DeepShapNet or VisionShapNet), got "
                f"{type(model).__name__}. For other models use shap.Explainer(model, masker)."
            )
        n_features = model.input_shape[0] if len(model.input_shape) == 1 else None
        if feature_names is not None:
            if n_features is None:
                raise ValueError("feature_names are only supported for tabular models (input shape (F,)).")
            feature_names = [str(name) for name in feature_names]
            if len(feature_names) != n_features:
                raise ValueError(
                    f"feature_names must have {n_features} entries (one per feature), got {len(feature_names)}."
                )
        if output_names is not None:
            output_names = [str(name) for name in output_names]
            if len(output_names) != model.n_outputs:
                raise ValueError(
                    f"output_names must have {model.n_outputs} entries (one per output), got {len(output_names)}."
                )
        self._masker = None
        # The reference is the single background sample: the game v(S) = f(x_S, r_rest) that the model
        # explains. A 2-D array becomes shap.maskers.Independent in the base class; the image masker is
        # built on first use (see `masker`).
        masker = model.reference.detach().cpu().numpy()[None] if n_features is not None else None
        # A plain super().__init__ call: the base class only rebinds __class__ when the class IS Explainer.
        super().__init__(model, masker=masker, feature_names=feature_names, output_names=output_names)

    @property
    def masker(self) -> shap.maskers.Masker | None:
        """A masker whose only background sample is the model's reference.

        ``shap.maskers.Independent`` for tabular models; ``shap.maskers.Image`` (on the channel-first
        ``(C, H, W)`` layout the model takes) for images, built on first access because its constructor
        JIT-compiles a partition tree (seconds).
        """
        if self._masker is None and len(self.model.input_shape) == 3:
            self._masker = shap.maskers.Image(self.model.reference.detach().cpu().numpy())
        return self._masker

    @masker.setter
    def masker(self, value: shap.maskers.Masker | None) -> None:
        self._masker = value

    def __call__(self, X: object) -> shap.Explanation:
        """Explain ``X`` in one batched forward pass.

        Args:
            X: ``(B, *input_shape)`` as a numpy array, torch tensor or (tabular) pandas DataFrame.

        Returns:
            :class:`shap.Explanation` with ``values`` ``(B, *input_shape, K)`` (images: each pixel's value
            split equally over its channels), ``base_values`` ``(B, K)`` and ``data`` ``(B, *input_shape)``.
        """
        x, feature_names = self._prepare(X)
        start = time.perf_counter()
        explanation = self._explain(x)
        values = explanation.per_element().detach().cpu().numpy()  # (B, *input_shape, K)
        return shap.Explanation(
            values=values,
            base_values=explanation.base_values.detach().cpu().numpy(),
            data=x.cpu().numpy(),
            feature_names=feature_names,
            output_names=self.output_names,
            compute_time=time.perf_counter() - start,
        )

    def image_explanation(self, X: object) -> shap.Explanation:
        """A channel-last explanation of images, the layout ``shap.plots.image`` draws.

        Args:
            X: images ``(B, C, H, W)`` (channel-first, as the model takes them).

        Returns:
            :class:`shap.Explanation` with ``values`` ``(B, H, W, C, K)`` and ``data`` ``(B, H, W, C)``.
            ``shap.plots.image`` sums the values over channels, which recovers each pixel's Shapley
            value. Pass ``ex[..., k]`` to draw only output ``k``.
        """
        if len(self.model.input_shape) != 3:
            raise ValueError(
                f"image_explanation needs an image model (input shape (C, H, W)), got input shape "
                f"{self.model.input_shape}; use explainer(X) for tabular data."
            )
        x, _ = self._prepare(X)
        start = time.perf_counter()
        explanation = self._explain(x)
        values = explanation.per_element().detach().permute(0, 2, 3, 1, 4).cpu().numpy()  # (B, H, W, C, K)
        return shap.Explanation(
            values=values,
            base_values=explanation.base_values.detach().cpu().numpy(),
            data=x.permute(0, 2, 3, 1).cpu().numpy(),  # (B, H, W, C)
            output_names=self.output_names,
            compute_time=time.perf_counter() - start,
        )

    def shap_values(self, X: object) -> np.ndarray:
        """Legacy API: the values ``(B, *input_shape, K)`` as one array (shap >= 0.45 layout)."""
        x, _ = self._prepare(X)
        return self._explain(x).per_element().detach().cpu().numpy()

    @property
    def expected_value(self) -> np.ndarray | float:
        """Legacy API: the prediction at the reference, ``(K,)``, or a float when ``K == 1``."""
        reference = self.model.reference.unsqueeze(0)
        base = self._explain(reference).base_values[0].detach().cpu().numpy()  # (K,)
        return float(base[0]) if base.shape[0] == 1 else base

    def model_output(self, output: int | str = 0) -> Callable[[np.ndarray], np.ndarray]:
        """The model as a numpy function with one scalar per row, for ``shap.benchmark``.

        Args:
            output: the output to return, an index or one of ``output_names``.

        Returns:
            ``f(X) -> (N,)`` float64, for ``X`` of shape ``(N, *input_shape)`` in any float dtype (shap's
            maskers produce float64; ``f`` casts to the model's dtype before calling it).
        """
        index = self._output_index(output)
        model = self.model

        def predict(X: np.ndarray) -> np.ndarray:
            x = torch.as_tensor(np.asarray(X), dtype=model.reference.dtype, device=model.reference.device)
            with torch.no_grad():
                return model(x)[:, index].cpu().numpy().astype(np.float64)

        return predict

    def _output_index(self, output: int | str) -> int:
        n_outputs = self.model.n_outputs
        if isinstance(output, str):
            if self.output_names is None or output not in self.output_names:
                raise ValueError(f"output {output!r} is not one of output_names {self.output_names}.")
            return list(self.output_names).index(output)
        if isinstance(output, bool) or not isinstance(output, (int, np.integer)):
            raise TypeError(f"output must be an int or an output name, got {type(output).__name__}.")
        if not -n_outputs <= int(output) < n_outputs:
            raise ValueError(f"output must lie in [{-n_outputs}, {n_outputs - 1}], got {output}.")
        return int(output) % n_outputs

    def _prepare(self, X: object) -> tuple[torch.Tensor, list[str] | None]:
        """``X`` as a tensor in the model's dtype and device, plus the feature names to report."""
        feature_names = self.feature_names
        if isinstance(X, pd.DataFrame):
            feature_names = [str(column) for column in X.columns]
            X = X.to_numpy(dtype=np.float64)
        elif isinstance(X, pd.Series):
            raise TypeError(
                "X must be 2-D: got a pandas Series (one row?). Pass a DataFrame, e.g. series.to_frame().T."
            )
        if isinstance(X, torch.Tensor):
            if X.is_complex():  # .to(float) would silently drop the imaginary part
                raise TypeError(f"X must hold real numbers, got a tensor of dtype {X.dtype}.")
            x = X.detach()
        else:
            array = np.asarray(X)
            if not np.issubdtype(array.dtype, np.number) or np.issubdtype(array.dtype, np.complexfloating):
                raise TypeError(f"X must hold real numbers, got an array of dtype {array.dtype}.")
            x = torch.from_numpy(np.ascontiguousarray(array))
        reference = self.model.reference
        return x.to(device=reference.device, dtype=reference.dtype), feature_names

    def _explain(self, x: torch.Tensor) -> ShapleyExplanation:
        with torch.no_grad():
            return self.model.explain(x)
