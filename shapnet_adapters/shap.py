"""A ShapNet as a shap explainer: ``ShapNetExplainer(model)(X)`` returns a :class:`shap.Explanation`.

One batched explained forward pass explains the whole input (shap's generic path loops row by row and
evaluates the model on many masked copies of each row); the values are the model's own Shapley values.
The explainer follows shap's conventions: ``Explainer(model, masker)`` construction, shap's call keywords,
``(B, F)`` values for a single output, a numpy-callable ``explainer.model``, and ``save``/``load``.
docs/ecosystem/shap.md says what each keyword does for a ShapNet.
"""

from __future__ import annotations

import os
import pickle
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import Any, BinaryIO

import numpy as np
import pandas as pd
import shap
import torch
from torch import nn

from shapnet import SelfExplaining, ShapNet, accepts_any_baseline, check_output_indices
from shapnet import load as load_shapnet
from shapnet import save as save_shapnet

from ._unwrap import as_shapnet

__all__ = ["ALGORITHMS", "ShapNetExplainer", "ShapNetModel"]

#: ``algorithm`` values accepted: shap's names of Shapley-value estimators. A ShapNet's values do not
#: depend on it (they come from the forward pass). ``"partition"`` (Owen values) is refused.
ALGORITHMS = ("auto", "exact", "permutation", "kernel", "sampling", "linear", "additive", "tree", "deep")


class ShapNetModel(shap.models.Model):
    """A ShapNet as shap sees a model: a function of numpy arrays.

    ``model(X)`` takes ``(N, *input_shape)`` as a numpy array (any float dtype; shap's maskers produce
    float64), a tensor or a DataFrame, and returns float64 ``(N, K)``, or ``(N,)`` for a single output,
    as shap's explainers expect of the models they wrap. With ``log_odds=True`` (a 2-output classifier)
    it returns ``logit_1 - logit_0``, ``(N,)``. ``inner_model`` is that numpy function (so shap's own
    explainers, which unwrap a ``shap.models.Model`` to its ``inner_model``, call it too); the torch module
    is ``shapnet``.

    Args:
        model: the ShapNet, or a ``ShapNetModel`` to copy.
        log_odds: see above.
    """

    shapnet: SelfExplaining
    log_odds: bool

    def __init__(self, model: ShapNet | nn.Module | ShapNetModel, log_odds: bool = False) -> None:
        if isinstance(model, ShapNetModel):
            log_odds = log_odds or model.log_odds
        inner = model.shapnet if isinstance(model, ShapNetModel) else model
        self.shapnet = as_shapnet(inner, type(self).__name__)
        self.log_odds = bool(log_odds)
        if self.log_odds and self.shapnet.n_outputs != 2:
            raise ValueError(
                "log_odds=True needs a model with 2 outputs (a binary classifier), got "
                f"{self.shapnet.n_outputs}."
            )
        super().__init__(self.predict)

    @property
    def n_outputs(self) -> int:
        """Outputs of this function: 1 with ``log_odds``, else ``K``."""
        return 1 if self.log_odds else self.shapnet.n_outputs

    def combine(self, t: torch.Tensor) -> torch.Tensor:
        """``(..., K)`` -> ``(..., K')``: the outputs this function returns (``logit_1 - logit_0``)."""
        return t[..., 1:] - t[..., :1] if self.log_odds else t

    def predict(self, X: object) -> np.ndarray:
        """``(N, K')`` float64 outputs for ``X`` ``(N, *input_shape)``; ``(N,)`` for a single output."""
        x = as_tensor(X, self.shapnet)
        with torch.no_grad():
            out = self.combine(self.shapnet(x)).cpu().numpy().astype(np.float64)  # (N, K')
        return out[:, 0] if out.shape[1] == 1 else out

    def save(self, out_file: BinaryIO) -> None:
        """Write the model as a :func:`shapnet.save` checkpoint (weights and config, no pickled code)."""
        if not isinstance(self.shapnet, ShapNet):  # checked before anything is written to out_file
            raise TypeError(
                f"ShapNetModel.save writes a shapnet.save checkpoint, which holds a ShapNet (or a HarsanyiNet); "
                f"got a {type(self.shapnet).__name__}."
            )
        super(shap.models.Model, self).save(out_file)  # shap's class marker, without Model's pickled module
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, "model.pt")
            save_shapnet(self.shapnet, path)
            with open(path, "rb") as handle:
                checkpoint = handle.read()
        pickle.dump(
            {"format": "shapnet.ShapNetModel", "checkpoint": checkpoint, "log_odds": self.log_odds}, out_file
        )

    @classmethod
    def load(cls, in_file: BinaryIO, instantiate: bool = True) -> ShapNetModel | dict[str, Any]:
        """Read what :meth:`save` wrote (shap calls this from ``Explainer.load``)."""
        if instantiate:
            return cls._instantiated_load(in_file)
        block = pickle.load(in_file)
        if not isinstance(block, dict) or block.get("format") != "shapnet.ShapNetModel":
            raise ValueError("the stream does not hold a ShapNetModel written by ShapNetModel.save.")
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, "model.pt")
            with open(path, "wb") as handle:
                handle.write(block["checkpoint"])
            model = load_shapnet(path).eval()  # torch.load(weights_only=True)
        return {"model": model, "log_odds": bool(block["log_odds"])}


class ShapNetExplainer(shap.Explainer):
    """shap explainer returning a ShapNet's own Shapley values, built like shap's own explainers.

    ``ShapNetExplainer(model)`` or ``ShapNetExplainer(model, masker)``; ``explainer(X)`` gives a
    :class:`shap.Explanation` with ``values`` ``(B, *input_shape, K)`` (``(B, *input_shape)`` for a single
    output, as every shap explainer returns), ``base_values`` ``(B, K)`` or ``(B,)``, ``data``,
    ``feature_names`` (``"Feature i"`` unless given or taken from a DataFrame), ``output_names``
    (``"Output k"`` unless given; None for a single output) and ``compute_time``. Plots take it as they take
    any shap explanation: ``shap.plots.waterfall(ex[0])`` on a single output, ``ex[0, :, k]`` otherwise.
    For images, :meth:`image_explanation` gives the channel-last layout that ``shap.plots.image`` draws.

    ``explainer.model`` is a :class:`ShapNetModel`: callable on numpy, as shap code expects; the torch
    module is ``explainer.shapnet``.

    Args:
        model: a ShapNet (Shallow, Deep or Vision), one wrapped in ``nn.DataParallel`` /
            ``DistributedDataParallel``, or a :class:`ShapNetModel`.
        masker: what "absent" means. None: the model's reference (the game the ShapNet explains). Background
            data (an array or DataFrame ``(G, F)``, or a ``shap.maskers.Independent``): for a
            :class:`~shapnet.ShallowShapNet` the values are then the exact average of its Shapley values
            against each background row, which is what shap's Exact explainer computes with that masker;
            Deep and Vision ShapNets accept only their reference as background (it is part of the model) and
            raise ValueError for other data. An image model also takes ``shap.maskers.Image`` with the
            reference as ``mask_value``.
        link: only ``shap.links.identity``: the values are additive in the model's own outputs (logits);
            another link would explain another function, which a ShapNet cannot do exactly.
        algorithm: one of :data:`ALGORITHMS`; no effect (the values come from the forward pass).
            ``"partition"`` is refused: it asks for Owen values, not Shapley values.
        output_names: ``K`` names of the outputs (e.g. class names).
        feature_names: ``F`` names for tabular models; by default the columns of a DataFrame ``X``.
        linearize_link: no effect (identity link).
        seed: no effect (nothing is sampled).
        log_odds: for a 2-output classifier, explain ``logit_1 - logit_0`` (one output, the log-odds of
            class 1), as shap's Linear and Tree explainers do for binary classifiers and as sklearn's
            ``decision_function`` returns. The values are exact: Shapley values are linear in the output.
    """

    def __init__(
        self,
        model: ShapNet | nn.Module | ShapNetModel,
        masker: object = None,
        link: Callable[..., Any] = shap.links.identity,
        algorithm: str = "auto",
        output_names: Sequence[str] | None = None,
        feature_names: Sequence[str] | None = None,
        linearize_link: bool = True,
        seed: int | None = None,
        log_odds: bool = False,
        **kwargs: Any,
    ) -> None:
        try:
            wrapped = ShapNetModel(model, log_odds=log_odds)
        except TypeError:
            raise TypeError(
                "ShapNetExplainer needs a ShapNet (ShallowShapNet, DeepShapNet or VisionShapNet), got "
                f"{type(model).__name__}. For other models use shap.Explainer(model, masker); for a fitted "
                "ShapNetClassifier/ShapNetRegressor use its shap_explainer() method."
            ) from None
        if kwargs:
            raise TypeError(
                f"ShapNetExplainer got unexpected keyword arguments {sorted(kwargs)}; it takes shap.Explainer's "
                "(masker, link, algorithm, output_names, feature_names, linearize_link, seed) and log_odds."
            )
        net = wrapped.shapnet
        if link is not shap.links.identity and getattr(link, "__name__", None) != "identity":
            raise ValueError(
                f"ShapNetExplainer supports only link=shap.links.identity, got {getattr(link, '__name__', link)!r}: "
                "a ShapNet's Shapley values are additive in its own outputs (logits), and another link would "
                "explain another function, which the model cannot do exactly. Explain the logits (the default), "
                "or use shap.Explainer(model_function, masker, link=...) for a sampled estimate."
            )
        if algorithm == "partition":
            raise ValueError(
                "algorithm='partition' asks for Owen values over a feature hierarchy; a ShapNet computes Shapley "
                "values. Use algorithm='auto' (or 'exact')."
            )
        if algorithm not in ALGORITHMS:
            raise ValueError(
                f"algorithm must be one of {list(ALGORITHMS)} or 'partition', got {algorithm!r}."
            )
        n_features = net.input_shape[0] if len(net.input_shape) == 1 else None
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
            if len(output_names) != wrapped.n_outputs:
                raise ValueError(
                    f"output_names must have {wrapped.n_outputs} entries (one per output), got {len(output_names)}."
                )
        self._masker = None
        self.algorithm, self.seed = algorithm, seed
        if masker is None and n_features is not None:
            masker = net.reference.detach().cpu().numpy()[None]  # the single background sample
        # A plain super().__init__ call: the base class only rebinds __class__ when the class IS Explainer.
        # It wraps a 2-D array or DataFrame into shap.maskers.Independent, as for shap's own explainers.
        super().__init__(
            wrapped,
            masker=masker,
            link=link,
            feature_names=feature_names,
            output_names=output_names,
            linearize_link=linearize_link,
        )
        self._background = self._check_masker(self._masker)

    # -- construction helpers ------------------------------------------------- #
    @property
    def shapnet(self) -> SelfExplaining:
        """The explained torch module."""
        return self.model.shapnet

    @property
    def masker(self) -> shap.maskers.Masker | None:
        """The masker: the one given, or one whose only background sample is the model's reference.

        ``shap.maskers.Independent`` for tabular models; ``shap.maskers.Image`` (on the channel-first
        ``(C, H, W)`` layout the model takes) for images, built on first access because its constructor
        JIT-compiles a partition tree (seconds).
        """
        if self._masker is None and len(self.shapnet.input_shape) == 3:
            self._masker = shap.maskers.Image(self.shapnet.reference.detach().cpu().numpy())
        return self._masker

    @masker.setter
    def masker(self, value: shap.maskers.Masker | None) -> None:
        self._masker = value

    def _check_masker(self, masker: object) -> torch.Tensor | None:
        """The background rows ``(G, *input_shape)`` to average over, or None for the reference alone."""
        net = self.shapnet
        if masker is None:
            return None
        if isinstance(masker, shap.maskers.Image):
            value = getattr(masker, "mask_value", None)
            if isinstance(value, np.ndarray):
                value = np.asarray(value, dtype=np.float64)
                ref = net.reference.detach().cpu().numpy()
                layouts = [value] + ([np.moveaxis(value, -1, 0)] if value.ndim == 3 else [])
                if any(v.shape == ref.shape and np.allclose(v, ref, rtol=1e-5, atol=1e-6) for v in layouts):
                    return None
            shown = value if isinstance(value, str) else "an array"
            raise ValueError(
                "an image ShapNet explains against its own reference: pass masker=None or "
                "shap.maskers.Image(model.reference.numpy()); blurring or inpainting maskers define another "
                f"game, which the model cannot play exactly (got mask_value={shown})."
            )
        data = getattr(masker, "data", None)
        if not isinstance(masker, shap.maskers.Independent) or data is None:
            raise TypeError(
                "masker must be None, background data (an array or DataFrame of shape (G, F)) or a "
                f"shap.maskers.Independent, got {type(masker).__name__}."
            )
        data = np.asarray(data.to_numpy() if isinstance(data, pd.DataFrame) else data, dtype=np.float64)
        n_features = net.input_shape[0] if len(net.input_shape) == 1 else "F"
        if len(net.input_shape) != 1 or data.ndim != 2 or data.shape[1] != net.input_shape[0]:
            raise ValueError(
                f"the masker's background data must have shape (G, {n_features}) "
                f"for this model (input shape {net.input_shape}), got {data.shape}."
            )
        background = torch.tensor(data).to(net.reference)
        if torch.allclose(background, net.reference.expand_as(background), rtol=1e-5, atol=1e-6):
            return None
        if not accepts_any_baseline(net):
            raise ValueError(
                f"{type(net).__name__} explains against its own reference (part of the model), so its values "
                f"against the masker's {len(data)} background rows are not defined. Pass masker=None (or the "
                "reference as the only background row), or use a ShallowShapNet, whose values are exact against "
                "any background."
            )
        return background

    # -- explaining ----------------------------------------------------------- #
    def __call__(
        self,
        *args: object,
        max_evals: int | str = "auto",
        main_effects: bool = False,
        error_bounds: bool = False,
        batch_size: int | str = "auto",
        outputs: object = None,
        silent: bool = False,
    ) -> shap.Explanation:
        """Explain ``X`` in one batched forward pass (or one per ``batch_size`` rows).

        Args:
            *args: one ``X``, ``(B, *input_shape)``: a numpy array, torch tensor or (tabular) DataFrame.
            max_evals: accepted for shap's API; no effect: the values are computed in one pass, not sampled.
            main_effects: also return ``main_effects`` ``(B, F[, K])``: ``f(x_i, r_rest) - f(r)`` per feature
                (tabular models; averaged over the background rows like the values).
            error_bounds: also return ``error_std``: zeros, since nothing is sampled. (A Deep ShapNet's values
                are its own explanation; their distance to the exact Shapley values of its output is measured
                by :func:`shapnet.explanation_error`, not here.)
            batch_size: rows per forward pass (bounds memory); ``"auto"``: all rows at once. Values unchanged.
            outputs: which outputs to explain: None (all), an int, a sequence of ints, a ``(B, n)`` array of
                per-row indices, or an ``shap.Explanation`` op chain applied to the model's outputs, e.g.
                ``shap.Explanation.argsort.flip[:2]`` (the two largest outputs of each row).
            silent: accepted for shap's API; no effect (no progress bar for one pass).

        Returns:
            :class:`shap.Explanation` with ``values`` ``(B, *input_shape, n)``, or ``(B, *input_shape)`` for
            a single output (images: each pixel's value split equally over its channels), ``base_values``
            ``(B, n)`` or ``(B,)``, and ``data`` ``(B, *input_shape)``.
        """
        if len(args) != 1:
            raise TypeError(
                f"a ShapNet takes one input, so call explainer(X) with one argument, got {len(args)}."
            )
        _check_call_keywords(max_evals, batch_size)
        x, feature_names = self._prepare(args[0])
        start = time.perf_counter()
        values, base, predictions = self._values(x, batch_size)  # (B, *in, K'), (B, K'), (B, K')
        index = self._output_indices(outputs, predictions)  # None or (B, n)
        names = self._output_name_list()
        extra: dict[str, Any] = {}
        if main_effects:
            extra["main_effects"] = self._main_effects(x, batch_size)
        values, base, names, extra = _select(values, base, names, extra, index)
        if error_bounds:
            extra["error_std"] = np.zeros_like(values)
        if len(self.shapnet.input_shape) == 1 and feature_names is None:
            feature_names = [f"Feature {i}" for i in range(x.shape[1])]
        return shap.Explanation(
            values=values,
            base_values=base,
            data=x.cpu().numpy(),
            feature_names=feature_names,
            output_names=names,
            compute_time=time.perf_counter() - start,
            **extra,
        )

    def image_explanation(self, X: object, **kwargs: Any) -> shap.Explanation:
        """A channel-last explanation of images, the layout ``shap.plots.image`` draws.

        Args:
            X: images ``(B, C, H, W)`` (channel-first, as the model takes them).
            **kwargs: as for ``explainer(X)`` (``outputs``, ``batch_size``, ...).

        Returns:
            :class:`shap.Explanation` with ``values`` ``(B, H, W, C, K)`` (``(B, H, W, C)`` for a single
            output) and ``data`` ``(B, H, W, C)``. ``shap.plots.image`` sums the values over channels, which
            recovers each pixel's Shapley value. To draw only output ``k``, keep the output axis:
            ``shap.plots.image(ex[..., k:k+1])`` (``ex[..., k]`` drops it, and the plot then fails), or
            pass ``outputs=[k]``.
        """
        if len(self.shapnet.input_shape) != 3:
            raise ValueError(
                f"image_explanation needs an image model (input shape (C, H, W)), got input shape "
                f"{self.shapnet.input_shape}; use explainer(X) for tabular data."
            )
        ex = self(X, **kwargs)
        values = np.moveaxis(ex.values, 1, 3)  # (B, C, H, W[, n]) -> (B, H, W, C[, n])
        extra = {}
        if getattr(ex, "error_std", None) is not None:
            extra["error_std"] = np.zeros_like(values)
        return shap.Explanation(
            values=values,
            base_values=ex.base_values,
            data=np.moveaxis(ex.data, 1, 3),  # (B, H, W, C)
            output_names=ex.output_names,
            compute_time=ex.compute_time,
            **extra,
        )

    def shap_values(self, X: object, nsamples: int | str = "auto", silent: bool = False) -> np.ndarray:
        """Legacy API: the values as one array, ``(B, *input_shape, K)`` (shap >= 0.45 layout), or
        ``(B, *input_shape)`` for a single output.

        ``nsamples`` (KernelExplainer's budget) and ``silent`` are accepted; neither has an effect.
        """
        _check_call_keywords(nsamples, "auto", budget_name="nsamples")
        x, _ = self._prepare(X)
        values = self._values(x, "auto")[0]
        return values[..., 0] if values.shape[-1] == 1 else values

    @property
    def expected_value(self) -> np.ndarray | float:
        """Legacy API: the prediction at the reference (the mean over the background rows), ``(K,)``, or a
        float for a single output."""
        net = self.shapnet
        rows = net.reference.unsqueeze(0) if self._background is None else self._background
        with torch.no_grad():
            base = self.model.combine(net(rows)).mean(0).double().cpu().numpy()  # (K',)
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
            out = model(X)
            return out if out.ndim == 1 else out[:, index]

        return predict

    # -- serialization -------------------------------------------------------- #
    def save(
        self,
        out_file: BinaryIO,
        model_saver: str | Callable = ".save",
        masker_saver: str | Callable = ".save",
    ) -> None:
        """Write the explainer (model checkpoint, masker, link, feature and output names) to a stream;
        read it back with ``ShapNetExplainer.load`` or ``shap.Explainer.load``."""
        super().save(out_file, model_saver, masker_saver)
        pickle.dump(
            {
                "format": "shapnet.ShapNetExplainer",
                "feature_names": self.feature_names,
                "output_names": self.output_names,
                "algorithm": self.algorithm,
                "seed": self.seed,
            },
            out_file,
        )

    @classmethod
    def load(
        cls,
        in_file: BinaryIO,
        model_loader: Callable | None = None,
        masker_loader: Callable | None = None,
        instantiate: bool = True,
    ) -> ShapNetExplainer | dict[str, Any]:
        if instantiate:
            return cls._instantiated_load(in_file, model_loader=model_loader, masker_loader=masker_loader)
        kwargs = super().load(in_file, model_loader, masker_loader, instantiate=False)
        block = pickle.load(in_file)
        if not isinstance(block, dict) or block.get("format") != "shapnet.ShapNetExplainer":
            raise ValueError("the stream does not hold a ShapNetExplainer written by ShapNetExplainer.save.")
        kwargs.update({k: block[k] for k in ("feature_names", "output_names", "algorithm", "seed")})
        return kwargs

    # -- internals ------------------------------------------------------------ #
    def _output_name_list(self) -> list[str] | None:
        n_outputs = self.model.n_outputs
        if self.output_names is not None:
            return list(self.output_names)
        return None if n_outputs == 1 else [f"Output {k}" for k in range(n_outputs)]

    def _output_index(self, output: int | str) -> int:
        n_outputs = self.model.n_outputs
        if isinstance(output, str):
            if self.output_names is None or output not in self.output_names:
                raise ValueError(f"output {output!r} is not one of output_names {self.output_names}.")
            return list(self.output_names).index(output)
        if isinstance(output, bool) or not isinstance(output, (int, np.integer)):
            raise TypeError(f"output must be an int or an output name, got {type(output).__name__}.")
        return int(check_output_indices(output, n_outputs, name="output"))

    def _output_indices(self, outputs: object, predictions: np.ndarray) -> np.ndarray | None:
        """``outputs`` as ``(B, n)`` int indices into the outputs, or None for all of them."""
        if outputs is None:
            return None
        batch, n_outputs = predictions.shape
        apply = getattr(outputs, "apply", None)
        if callable(apply):  # an op chain such as shap.Explanation.argsort.flip[:2]
            # Applied to each row's outputs (K,), as shap's Partition explainer does.
            outputs = np.stack([np.asarray(apply(shap.Explanation(row)).values) for row in predictions])
        if isinstance(outputs, (bool, np.bool_)):
            raise TypeError("outputs must be None, an int, a sequence of ints or a (B, n) array, got a bool.")
        # Several outputs per row, unlike a target: checked by the core, laid out (B, n) here.
        index = check_output_indices(np.asarray(outputs), n_outputs, name="outputs").numpy()
        if index.ndim <= 1:
            index = np.broadcast_to(index.reshape(1, -1), (batch, index.size))
        if index.ndim != 2 or index.shape[0] != batch:
            raise ValueError(
                f"outputs must be an int, a sequence of ints or a ({batch}, n) array, got {index.shape}."
            )
        return index

    def _prepare(self, X: object) -> tuple[torch.Tensor, list[str] | None]:
        """``X`` as a tensor in the model's dtype and device, plus the feature names to report."""
        feature_names = self.feature_names
        if isinstance(X, pd.DataFrame):
            feature_names = [str(column) for column in X.columns]
        return as_tensor(X, self.shapnet), feature_names

    def _values(self, x: torch.Tensor, batch_size: int | str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Values ``(B, *input_shape, K')``, base values and predictions ``(B, K')``, float numpy."""
        step = len(x) if batch_size == "auto" else int(batch_size)
        background = self._background
        parts = []
        with torch.no_grad():
            for start in range(0, max(len(x), 1), max(step, 1)):  # one pass for an empty batch too
                chunk = x[start : start + step]
                if background is None:
                    ex = self.shapnet.explain(chunk)
                    parts.append((ex.per_element(), ex.base_values, ex.predictions))
                else:
                    parts.append(_average_over_background(self.shapnet, chunk, background))
            combine = self.model.combine  # inside no_grad too: no graph for the output combination
            values, base, predictions = (
                torch.cat([p[i] for p in parts]) if parts else None for i in range(3)
            )
            return tuple(combine(t).cpu().numpy() for t in (values, base, predictions))

    def _main_effects(self, x: torch.Tensor, batch_size: int | str) -> np.ndarray:
        """``(B, F, K')``: ``f(x_i, background_rest) - f(background)``, averaged over the background rows."""
        net = self.shapnet
        if len(net.input_shape) != 1:
            raise ValueError(
                "main_effects are available for tabular models (input shape (F,)), not for images."
            )
        rows = net.reference.unsqueeze(0) if self._background is None else self._background  # (G, F)
        n_features = x.shape[1]
        eye = torch.eye(n_features, dtype=torch.bool, device=x.device)  # (F, F): feature i on in row i
        step = max(1, (len(x) if batch_size == "auto" else int(batch_size)))
        effects = []
        with torch.no_grad():
            base = net(rows)  # (G, K)
            for start in range(0, len(x), step):
                chunk = x[start : start + step]  # (b, F)
                # (b, G, F, F): for sample s, background row g and feature i, x_i with row g elsewhere.
                mixed = torch.where(eye, chunk[:, None, None, :], rows[None, :, None, :])
                out = net(mixed.reshape(-1, n_features)).view(len(chunk), len(rows), n_features, -1)
                effects.append((out - base[None, :, None, :]).mean(1))  # (b, F, K)
        return self.model.combine(torch.cat(effects)).cpu().numpy()


def as_tensor(X: object, model: SelfExplaining) -> torch.Tensor:
    """``X`` (numpy array, tensor or DataFrame) as a tensor in ``model``'s dtype and device."""
    if isinstance(X, pd.DataFrame):
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
        x = torch.from_numpy(np.require(array, requirements=["C", "W"]))  # copies read-only arrays only
    reference = model.reference
    return x.to(device=reference.device, dtype=reference.dtype)


def _average_over_background(
    model: SelfExplaining, x: torch.Tensor, background: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A Shallow ShapNet's values averaged over baselines: exact for the interventional game
    ``v(S) = mean_g f(x_S, background_g)`` (Shapley values are linear in the game)."""
    n_rows, n_background = len(x), len(background)
    repeated = x.repeat(n_background, 1)  # (G*b, F): row g*b + s is sample s
    baselines = background.repeat_interleave(n_rows, 0)  # (G*b, F): row g*b + s is background g
    ex = model.explain(repeated, baseline=baselines)
    values = ex.values.view(n_background, n_rows, *ex.values.shape[1:]).mean(0)
    base = ex.base_values.view(n_background, n_rows, -1).mean(0)
    return values, base, ex.predictions[:n_rows]


def _check_call_keywords(budget: object, batch_size: object, *, budget_name: str = "max_evals") -> None:
    for name, value in ((budget_name, budget), ("batch_size", batch_size)):
        if value == "auto":
            continue
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be 'auto' or a positive int, got {value!r}.")


def _select(
    values: np.ndarray,
    base: np.ndarray,
    names: list[str] | None,
    extra: dict[str, Any],
    index: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray, Any, dict[str, Any]]:
    """Pick the outputs ``index`` ``(B, n)`` (None: all), and drop the output axis of a single output."""
    if index is not None:
        rows = np.arange(len(values))[:, None]
        values = np.moveaxis(np.moveaxis(values, -1, 1)[rows, index], 1, -1)  # (B, *in, n)
        base = base[rows, index]
        extra = {k: np.moveaxis(np.moveaxis(v, -1, 1)[rows, index], 1, -1) for k, v in extra.items()}
        if names is not None:
            picked = np.asarray(names, dtype=object)[index]  # (B, n)
            names = list(picked[0]) if (picked == picked[0]).all() else picked
        return values, base, names, extra
    if values.shape[-1] == 1:  # one output: (B, *in) and (B,), as shap's explainers return
        return values[..., 0], base[:, 0], None, {k: v[..., 0] for k, v in extra.items()}
    return values, base, names, extra
