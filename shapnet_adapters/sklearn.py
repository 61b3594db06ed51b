"""scikit-learn estimators that train a ShapNet with skorch and explain their own predictions.

:class:`ShapNetClassifier` and :class:`ShapNetRegressor` are plain sklearn estimators (``__init__`` only
stores its arguments; ``clone``, ``Pipeline``, ``GridSearchCV`` and ``cross_val_score`` work). ``fit``
validates the data, builds a :class:`~shapnet.DeepShapNet`, :class:`~shapnet.ShallowShapNet` or
:class:`~shapnet.HarsanyiNet` for ``X``'s number of features, and trains it with a skorch
``NeuralNetClassifier`` / ``NeuralNetRegressor`` whose training step adds the explanation penalties of
:func:`shapnet.training.training_loss`.

Why a wrapper around skorch rather than a skorch subclass: skorch nets set attributes in ``__init__``
and route the module's arguments through ``module__*`` parameters that must be known before ``fit``, while
a ShapNet's size comes from ``X``. Wrapping keeps the sklearn contract exact (``check_estimator`` passes)
and the parameters flat (``l1=``, ``model=``), and the skorch net (``net_``) still does the training:
batching, the validation split, early stopping, the history and the device.

Example:
    >>> from sklearn.datasets import load_wine
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import StandardScaler
    >>> X, y = load_wine(return_X_y=True, as_frame=True)
    >>> clf = make_pipeline(StandardScaler(), ShapNetClassifier(random_state=0)).fit(X, y)
    >>> ex = clf[-1].explain(clf[:-1].transform(X))  # shap.Explanation, values (178, 13, 3)
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal, cast

import numpy as np
import torch
from numpy.typing import ArrayLike
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data
from skorch import NeuralNetClassifier, NeuralNetRegressor
from skorch.callbacks import Callback, EarlyStopping
from skorch.dataset import ValidSplit, unpack_data
from skorch.utils import to_tensor

from shapnet.harsanyi import HarsanyiNet
from shapnet.models import DeepShapNet, ShallowShapNet, ShapNet
from shapnet.training import training_loss

if TYPE_CHECKING:
    import shap
    from tqdm import tqdm

    from .captum import ShapNetAttribution
    from .shap import ShapNetExplainer

__all__ = ["ShapNetClassifier", "ShapNetRegressor", "explain_pipeline"]

# Each builder is called as builder(n_features, n_outputs, reference=..., **model_kwargs).
_BUILDERS: dict[str, Callable[..., ShapNet]] = {
    "deep": DeepShapNet,
    "shallow": ShallowShapNet,
    "harsanyi": HarsanyiNet,
}
_RESERVED = ("n_features", "n_outputs", "reference", "prune")
#: The Shapley-consistency weight that ``consistency="auto"`` gives a deep model (README, "The λ sweep").
RECOMMENDED_CONSISTENCY = 3.0

#: Rows per forward pass at inference (``predict``, ``predict_proba``, ``explain``).
_INFERENCE_ROWS = 4096

#: Checks of ``sklearn.utils.estimator_checks`` that the estimators deliberately fail, with the reason.
EXPECTED_FAILED_CHECKS: dict[str, str] = {}


# --------------------------------------------------------------------------- #
# skorch side: the training step, and a tqdm bar over epochs
# --------------------------------------------------------------------------- #
class _ExplainedTrainingMixin:
    """Replaces skorch's training step by :func:`shapnet.training.training_loss` (one explained pass)."""

    # Set by skorch's NeuralNet, which this class is mixed into.
    module_: torch.nn.Module
    criterion_: torch.nn.Module
    device: str | torch.device

    def __init__(
        self,
        *args: Any,
        l1: float = 0.0,
        linf: float = 0.0,
        reg_layers: Literal["last", "all"] = "last",
        consistency: float = 0.0,
        n_coalitions: int = 1,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.l1, self.linf, self.reg_layers = l1, linf, reg_layers
        self.consistency, self.n_coalitions = consistency, n_coalitions

    def train_step_single(self, batch: Any, **fit_params: Any) -> dict[str, torch.Tensor]:
        self.module_.train()
        self.criterion_.train()
        Xi, yi = unpack_data(batch)
        x, y = to_tensor(Xi, device=self.device), to_tensor(yi, device=self.device)
        loss, y_pred = training_loss(
            self.module_,
            x,
            y,
            self.criterion_,
            l1=self.l1,
            linf=self.linf,
            reg_layers=self.reg_layers,
            consistency=self.consistency,
            n_coalitions=self.n_coalitions,
        )
        loss.backward()
        return {"loss": loss, "y_pred": y_pred}


class _ClassifierNet(_ExplainedTrainingMixin, NeuralNetClassifier):
    pass


class _RegressorNet(_ExplainedTrainingMixin, NeuralNetRegressor):
    pass


class _EpochBar(Callback):
    """A tqdm progress bar over epochs, with the losses in its postfix."""

    def __init__(self, total: int, desc: str) -> None:
        self.total, self.desc = total, desc

    def initialize(self) -> _EpochBar:
        self.bar_: tqdm | None = None
        return self

    def on_train_begin(self, net: Any, **kwargs: Any) -> None:
        from tqdm.auto import tqdm

        self.bar_ = tqdm(total=self.total, desc=self.desc, unit="epoch", dynamic_ncols=True)

    def on_epoch_end(self, net: Any, **kwargs: Any) -> None:
        row = net.history[-1]
        postfix = {
            k: f"{row[k]:.4f}" for k in ("train_loss", "valid_loss", "valid_acc") if row.get(k) is not None
        }
        assert self.bar_ is not None  # made by on_train_begin
        self.bar_.set_postfix(postfix)
        self.bar_.update(1)

    def on_train_end(self, net: Any, **kwargs: Any) -> None:
        if self.bar_ is not None:
            if self.bar_.n < self.bar_.total:  # stopped early: the bar ends at the epochs run (n_iter_)
                self.bar_.total = self.bar_.n
                self.bar_.set_description(f"{self.desc} (early stopping)")
            self.bar_.close()
        self.bar_ = None  # a closed bar is not picklable


# --------------------------------------------------------------------------- #
# Validation helpers
# --------------------------------------------------------------------------- #
def _number(
    value: object, name: str, *, low: float = 0.0, low_open: bool = False, high: float | None = None
) -> float:
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        number = float(value)
    else:
        number = math.nan  # refused below
    ok = math.isfinite(number) and (number > low if low_open else number >= low)
    ok = ok and (high is None or number < high)
    if not ok:
        bounds = f"{'>' if low_open else '>='} {low}" + ("" if high is None else f" and < {high}")
        raise ValueError(f"{name} must be a finite number {bounds}, got {value!r}.")
    return number


def _positive_int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}.")
    return int(value)


def _writable(X: np.ndarray) -> np.ndarray:
    # torch.as_tensor warns on read-only arrays (memmaps): copy those, keep the others as they are.
    return np.require(X, dtype=np.float32, requirements=["C", "W"])


# --------------------------------------------------------------------------- #
# Estimators
# --------------------------------------------------------------------------- #
class _ShapNetEstimator(BaseEstimator):
    """What the classifier and the regressor share: parameters, ``fit`` and ``explain``."""

    _task: str
    model_: ShapNet  # set by fit

    def __init__(
        self,
        model: Literal["deep", "shallow", "harsanyi"] = "deep",
        model_kwargs: dict | None = None,
        reference: str | np.ndarray = "zero",
        l1: float = 0.0,
        linf: float = 0.0,
        reg_layers: Literal["last", "all"] = "last",
        consistency: float | Literal["auto"] = "auto",
        n_coalitions: int = 1,
        prune: float | None = None,
        max_epochs: int = 100,
        lr: float = 3e-3,
        batch_size: int = 64,
        early_stopping: bool = True,
        validation_fraction: float = 0.1,
        patience: int = 20,
        weight_decay: float = 0.0,
        device: str = "cpu",
        random_state: int | np.random.RandomState | None = None,
        verbose: int = 0,
    ) -> None:
        self.model = model
        self.model_kwargs = model_kwargs
        self.reference = reference
        self.l1 = l1
        self.linf = linf
        self.reg_layers = reg_layers
        self.consistency = consistency
        self.n_coalitions = n_coalitions
        self.prune = prune
        self.max_epochs = max_epochs
        self.lr = lr
        self.batch_size = batch_size
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.patience = patience
        self.weight_decay = weight_decay
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    # -- fit ------------------------------------------------------------------ #
    def _check_params(self) -> None:
        if self.model not in _BUILDERS:
            raise ValueError(f"model must be one of {sorted(_BUILDERS)}, got {self.model!r}.")
        if self.model_kwargs is not None and not isinstance(self.model_kwargs, dict):
            raise TypeError(f"model_kwargs must be a dict or None, got {type(self.model_kwargs).__name__}.")
        clash = sorted(set(self.model_kwargs or {}) & set(_RESERVED))
        if clash:
            raise ValueError(
                f"model_kwargs may not set {clash}: the estimator sets n_features and n_outputs from the data, "
                "and reference and prune are estimator parameters of their own."
            )
        _number(self.l1, "l1")
        _number(self.linf, "linf")
        if self.reg_layers not in ("last", "all"):
            raise ValueError(f"reg_layers must be 'last' or 'all', got {self.reg_layers!r}.")
        self._consistency_weight()
        _positive_int(self.n_coalitions, "n_coalitions")
        if self.prune is not None:
            _number(self.prune, "prune", high=1.0)
            if self.model != "deep":
                raise ValueError(
                    f"prune works with model='deep' only, got model={self.model!r} (a shallow ShapNet has a "
                    "single layer; a HarsanyiNet's units already fire only on their chosen children)."
                )
        _positive_int(self.max_epochs, "max_epochs")
        _number(self.lr, "lr", low_open=True)
        _positive_int(self.batch_size, "batch_size")
        if not isinstance(self.early_stopping, (bool, np.bool_)):
            raise TypeError(f"early_stopping must be a bool, got {type(self.early_stopping).__name__}.")
        _number(self.validation_fraction, "validation_fraction", low_open=True, high=1.0)
        _positive_int(self.patience, "patience")
        _number(self.weight_decay, "weight_decay")
        if (
            isinstance(self.verbose, bool)
            or not isinstance(self.verbose, (int, np.integer))
            or self.verbose < 0
        ):
            raise ValueError(f"verbose must be an int >= 0, got {self.verbose!r}.")

    def _consistency_weight(self, n_features: int = 2) -> float:
        """``consistency`` as a number: ``"auto"`` is :data:`RECOMMENDED_CONSISTENCY` for a deep model and
        0 for a shallow one or a HarsanyiNet (whose values are exact already) or a single feature (always
        exact)."""
        if isinstance(self.consistency, str):
            if self.consistency != "auto":
                raise ValueError(
                    f"consistency must be 'auto' or a finite number >= 0, got {self.consistency!r}."
                )
            return RECOMMENDED_CONSISTENCY if self.model == "deep" and n_features >= 2 else 0.0
        return _number(self.consistency, "consistency")

    def _check_reference(self, X: np.ndarray) -> np.ndarray:
        n_features = X.shape[1]
        if isinstance(self.reference, str):
            if self.reference == "zero":
                return np.zeros(n_features, dtype=np.float32)
            if self.reference == "mean":
                return X.mean(0, dtype=np.float64).astype(np.float32)
            raise ValueError(
                f"reference must be 'zero', 'mean' or an array of shape (F,), got {self.reference!r}."
            )
        try:
            ref = np.asarray(self.reference, dtype=np.float32)
        except (TypeError, ValueError) as err:
            raise TypeError(
                f"reference must be 'zero', 'mean' or an array of {n_features} numbers, got "
                f"{type(self.reference).__name__}."
            ) from err
        if ref.shape != (n_features,):
            raise ValueError(
                f"reference must have shape (F,) = ({n_features},), one value per feature, got {ref.shape}."
            )
        if not np.isfinite(ref).all():
            raise ValueError("reference must be finite, but it contains NaN or inf.")
        return ref

    def _fit(self, X: np.ndarray, y: np.ndarray, n_outputs: int) -> _ShapNetEstimator:
        """Build ``model_`` and train it with skorch on validated ``X`` (float32) and encoded ``y``."""
        self.reference_ = self._check_reference(X)
        self.consistency_ = self._consistency_weight(X.shape[1])
        early_stopping = bool(self.early_stopping) and self._can_hold_out(y)
        seed = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
        kwargs = dict(self.model_kwargs or {})
        if self.prune is not None:
            kwargs["prune"] = float(self.prune)
        callbacks: list[tuple[str, Callback]] = []
        if self.verbose:  # before EarlyStopping, which ends training from its own on_epoch_end
            callbacks.append(("progress", _EpochBar(int(self.max_epochs), type(self).__name__)))
        if early_stopping:
            stopper = EarlyStopping(monitor="valid_loss", patience=int(self.patience), load_best=True)
            callbacks.append(("early_stopping", stopper))
        classification = self._task == "classification"
        net_class = _ClassifierNet if classification else _RegressorNet
        # The RNG is forked so that fit is reproducible for an int random_state (weights, shuffling, the
        # validation split, coalition sampling) without touching the caller's global torch RNG.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            module = _BUILDERS[self.model](
                X.shape[1], n_outputs, reference=torch.from_numpy(self.reference_), **kwargs
            )
            net = net_class(
                module,
                criterion=torch.nn.CrossEntropyLoss if classification else torch.nn.MSELoss,
                optimizer=torch.optim.AdamW,
                optimizer__weight_decay=float(self.weight_decay),
                lr=float(self.lr),
                max_epochs=int(self.max_epochs),
                batch_size=int(self.batch_size),
                iterator_train__shuffle=True,
                train_split=(
                    ValidSplit(float(self.validation_fraction), stratified=classification, random_state=seed)
                    if early_stopping
                    else None
                ),
                callbacks=callbacks or None,
                device=self.device,
                verbose=0,
                l1=float(self.l1),
                linf=float(self.linf),
                reg_layers=self.reg_layers,
                consistency=self.consistency_,
                n_coalitions=int(self.n_coalitions),
            )
            net.fit(X, y)
        self.net_ = net
        self.model_ = cast(ShapNet, net.module_.eval())  # the module built above, as skorch holds it
        self.history_ = [{k: v for k, v in row.items() if k != "batches"} for row in net.history]
        self.n_iter_ = len(self.history_)
        return self

    def _can_hold_out(self, y: np.ndarray) -> bool:
        """Whether a (stratified) validation split is possible; warns and returns False if not."""
        n_samples = len(y)
        n_valid = math.ceil(float(self.validation_fraction) * n_samples)  # as sklearn's ShuffleSplit
        if self._task == "classification":
            counts = np.bincount(y)
            n_classes = len(counts)
            ok = counts.min() >= 2 and n_valid >= n_classes and n_samples - n_valid >= n_classes
            need = f"at least 2 samples per class and {n_classes} samples on each side of the split"
        else:
            ok = n_samples - n_valid >= 1
            need = "at least 2 samples"
        if not ok:
            warnings.warn(
                f"early_stopping holds out validation_fraction={self.validation_fraction} of the data "
                f"(stratified for a classifier), which needs {need}; got n_samples={n_samples}. Training "
                f"on all samples for max_epochs={self.max_epochs} epochs without early stopping.",
                UserWarning,
                stacklevel=4,
            )
        return ok

    # -- inference ------------------------------------------------------------ #
    def _validate_X(self, X: object) -> np.ndarray:
        check_is_fitted(self)
        return _writable(validate_data(self, X, dtype=np.float32, reset=False))

    def _logits(self, X: object) -> np.ndarray:
        """``(B, K)`` float64 logits.

        The fitted module is called directly, in large chunks, in float64: skorch's ``forward`` would run it through a
        DataLoader in ``batch_size`` rows, which costs more than the model itself at inference (and shap's
        model-agnostic explainers call ``predict_proba`` on thousands of small batches).
        """
        X = self._validate_X(X)
        step = max(int(self.batch_size), _INFERENCE_ROWS)
        # In float64 (a float64 view of the trained float32 weights): a float32 forward rounds differently for
        # different batch sizes (~1e-7), and sklearn expects a row's prediction not to depend on its batch.
        module = self.model_
        state = {
            name: t.to(torch.float64) if t.is_floating_point() else t
            for name, t in (*module.named_parameters(), *module.named_buffers())
        }
        out = []
        with torch.no_grad():
            for start in range(0, len(X), step):
                x = torch.from_numpy(X[start : start + step]).to(self.device, torch.float64)
                out.append(torch.func.functional_call(module, state, (x,)).cpu())
        return torch.cat(out).numpy()

    def explain(self, X: object) -> shap.Explanation:
        """Shapley values of the predictions, from the model's own forward pass.

        Args:
            X: ``(B, F)`` array or DataFrame.

        Returns:
            ``shap.Explanation`` as shap's explainers return for the same kind of model: ``values``
            ``(B, F, K)`` and ``base_values`` ``(B, K)`` for ``K >= 3`` classes (logits, one output per class,
            ``output_names`` the class labels); ``(B, F)`` and ``(B,)`` for a binary classifier (the log-odds
            of ``classes_[1]``, which ``decision_function`` returns, as shap's Linear and Tree explainers
            explain a binary sklearn classifier) and for the regressor. ``base_values`` are the outputs at
            ``reference_``, ``data`` is ``X`` as float32, ``feature_names`` the DataFrame's columns if fitted
            on one (else ``"Feature i"``). ``values.sum(1) + base_values`` equals ``decision_function(X)``
            (``predict(X)`` for the regressor).
        """
        X = self._validate_X(X)
        return self.shap_explainer()(X, batch_size=max(int(self.batch_size), _INFERENCE_ROWS))

    def _output_names(self) -> list[str] | None:
        return None

    def captum_attribution(self) -> ShapNetAttribution:
        """A Captum ``Attribution`` over the fitted ShapNet (``shapnet_adapters.captum``).

        It takes tensors of shape ``(B, F)``, preprocessed as ``X`` was for ``fit``; ``target`` selects the
        class (logit) to explain.
        """
        from .captum import ShapNetAttribution

        check_is_fitted(self)
        return ShapNetAttribution(self.model_)

    def shap_explainer(self) -> ShapNetExplainer:
        """A ``shap.Explainer`` over the fitted ShapNet (``shapnet_adapters.shap``), with this estimator's
        feature and output names; for a binary classifier it explains the log-odds (see :meth:`explain`)."""
        from .shap import ShapNetExplainer

        check_is_fitted(self)
        feature_names = list(self.feature_names_in_) if hasattr(self, "feature_names_in_") else None
        binary = self.model_.n_outputs == 2 and self._task == "classification"
        return ShapNetExplainer(
            self.model_,
            feature_names=feature_names,
            output_names=None if binary else self._output_names(),
            log_odds=binary,
        )

    def __call__(self, *args: Any, **kwargs: Any) -> None:
        """Not a function: raises TypeError pointing to :meth:`shap_explainer` (what ``shap.Explainer(est)``
        ends up calling)."""
        name = type(self).__name__
        method = "predict_proba" if self._task == "classification" else "predict"
        raise TypeError(
            f"a {name} is an estimator, not a function. To explain it with shap, use est.shap_explainer() "
            "(or est.explain(X)): the model's own exact values in one pass. For shap's model-agnostic "
            f"explainers pass a method, e.g. shap.Explainer(est.{method}, X)."
        )

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.non_deterministic = self.random_state is None
        return tags


_PARAMS_DOC = """
    Args:
        model: ``"deep"`` (:class:`~shapnet.DeepShapNet`, butterfly of pairwise Shapley layers),
            ``"shallow"`` (:class:`~shapnet.ShallowShapNet`, exact Shapley values; all feature pairs by
            default, ``model_kwargs={"groups": "gam"}`` for an additive model) or ``"harsanyi"``
            (:class:`~shapnet.HarsanyiNet`, Harsanyi-interaction units: exact Shapley values against the
            reference; two layers of 100 units by default, ``model_kwargs={"hidden": (32, 32)}``...).
        model_kwargs: more arguments of the model's constructor (``channels``, ``hidden``, ``groups``,
            ``child_ratio``, ``gamma``...).
        reference: the baseline the values are relative to: ``"zero"`` (the mean of standardised data),
            ``"mean"`` (the training mean) or an array ``(F,)``. Part of a deep model (see DESIGN §4).
        l1: weight of the L1 penalty on the Shapley values (sparser explanations).
        linf: weight of the L-infinity penalty (importance spread over more features).
        reg_layers: penalise the ``"last"`` layer's values or ``"all"`` layers' representations.
        consistency: weight of the Shapley-consistency loss (:mod:`shapnet.consistency`), which pulls a
            deep model's explanation towards the exact Shapley values of its output; 0 disables it.
            ``"auto"`` (default): 3.0 for ``model="deep"`` (the smallest weight that brought the error
            against the exact values to <= 0.05 on yeast and wine, at about twice the training time; see
            the README), 0 for ``model="shallow"`` and ``model="harsanyi"`` (exact values already).
        n_coalitions: coalitions sampled per sample for the consistency loss.
        prune: fraction of features pruned per instance after each layer (``model="deep"`` only).
        max_epochs: training epochs (fewer with early stopping).
        lr: AdamW learning rate.
        batch_size: rows per step.
        early_stopping: hold out ``validation_fraction`` of the data (stratified for the classifier) and
            stop when the validation loss has not improved for ``patience`` epochs, restoring the best
            weights. On data too small for that split (fewer than 2 samples per class, or fewer
            validation samples than classes) it warns and trains on everything for ``max_epochs``.
            The defaults (on, patience 20) were chosen by measuring test scores against full training and
            against patience 5 (docs/ecosystem/sklearn.md, "Early stopping").
        validation_fraction: see ``early_stopping``.
        patience: epochs without improvement of the validation loss before stopping (default 20; 5 stopped
            a shallow regressor after 7-9 epochs in scikit-learn's ``check_regressors_train``).
        weight_decay: AdamW's decoupled weight decay.
        device: torch device for training and inference.
        random_state: int for reproducible fits (weights, shuffling, validation split, coalition
            sampling); the global torch RNG is left untouched.
        verbose: 1 shows a tqdm progress bar over epochs.

    Inputs should be standardised (e.g. ``StandardScaler`` in a ``Pipeline``); ``X`` is cast to float32.
"""

_SKIPPED_DOC = """
    Every ``sklearn.utils.estimator_checks`` check passes (``EXPECTED_FAILED_CHECKS`` is empty; see
    the README, "scikit-learn's estimator checks", for how the test suite runs them).
"""


class ShapNetClassifier(ClassifierMixin, _ShapNetEstimator):
    __doc__ = (
        """A ShapNet classifier (softmax over ``K`` logits, cross-entropy) with built-in explanations.
"""
        + _PARAMS_DOC
        + """
    Attributes:
        model_: the trained ShapNet or HarsanyiNet (``K`` outputs, ``K = n_classes``; also for 2 classes).
        net_: the skorch ``NeuralNetClassifier`` that trained it.
        classes_: class labels, ``(K,)``.
        n_features_in_, feature_names_in_: as in sklearn.
        reference_: ``(F,)`` float32 reference used by the model.
        consistency_: the Shapley-consistency weight used (``consistency="auto"`` resolved).
        history_: one dict per epoch (``train_loss``, ``valid_loss``, ``valid_acc``, ``dur``...).
        n_iter_: epochs run.
"""
        + _SKIPPED_DOC
    )

    _task = "classification"

    def fit(self, X: object, y: object) -> ShapNetClassifier:
        """Train on ``X`` ``(B, F)`` and labels ``y`` ``(B,)`` (any hashable labels)."""
        self._check_params()
        X_valid, y_valid = validate_data(self, X, y, dtype=np.float32)
        check_classification_targets(y_valid)
        classes, y_encoded = np.unique(y_valid, return_inverse=True)
        if len(classes) < 2:
            raise ValueError(
                f"{type(self).__name__} needs samples of at least 2 classes, got 1 class ({classes[0]!r})."
            )
        self.classes_ = classes
        return self._fit(_writable(X_valid), y_encoded.astype(np.int64), len(classes))

    def decision_function(self, X: object) -> np.ndarray:
        """Logits: ``(B, K)``, or ``(B,)`` (``logit_1 - logit_0``) for two classes, as sklearn expects."""
        logits = self._logits(X)
        return logits[:, 1] - logits[:, 0] if logits.shape[1] == 2 else logits

    def predict_proba(self, X: object) -> np.ndarray:
        """Softmax of the logits (computed in float64), ``(B, K)``."""
        logits = self._logits(X)
        logits -= logits.max(1, keepdims=True)
        prob = np.exp(logits)
        return prob / prob.sum(1, keepdims=True)

    def predict(self, X: object) -> np.ndarray:
        """Class labels, ``(B,)``."""
        index = self._logits(X).argmax(1)  # checks fitted first (before classes_ is looked up)
        return self.classes_[index]

    def _output_names(self) -> list[str]:
        return [str(c) for c in self.classes_]


class ShapNetRegressor(RegressorMixin, _ShapNetEstimator):
    __doc__ = (
        """A ShapNet regressor (one output, mean squared error) with built-in explanations.
"""
        + _PARAMS_DOC
        + """
    Targets should be roughly standardised, like the inputs: the model starts at output 0 with unit-scale
    weights (``sklearn.compose.TransformedTargetRegressor`` does it, but hides ``explain``; or scale ``y``
    yourself and rescale the values).

    Attributes:
        model_: the trained ShapNet or HarsanyiNet (1 output).
        net_: the skorch ``NeuralNetRegressor`` that trained it.
        n_features_in_, feature_names_in_: as in sklearn.
        reference_: ``(F,)`` float32 reference used by the model.
        consistency_: the Shapley-consistency weight used (``consistency="auto"`` resolved).
        history_: one dict per epoch (``train_loss``, ``valid_loss``, ``dur``...).
        n_iter_: epochs run.
"""
        + _SKIPPED_DOC
    )

    _task = "regression"

    def fit(self, X: object, y: object) -> ShapNetRegressor:
        """Train on ``X`` ``(B, F)`` and targets ``y`` ``(B,)``."""
        self._check_params()
        X_valid, y_valid = validate_data(self, X, y, dtype=np.float32, y_numeric=True)
        return self._fit(_writable(X_valid), np.asarray(y_valid, dtype=np.float32).reshape(-1, 1), 1)

    def predict(self, X: object) -> np.ndarray:
        """Predictions, ``(B,)``."""
        return self._logits(X)[:, 0]


def explain_pipeline(pipeline: Any, X: ArrayLike) -> shap.Explanation:
    """Explain raw rows with a fitted ``Pipeline`` whose last step is a ShapNet estimator.

    The rows go through the pipeline's transformers (``pipeline[:-1].transform``) and are explained by the
    final estimator (:meth:`ShapNetClassifier.explain`), so the values belong to the features the model sees.
    The explanation carries their names (``get_feature_names_out``: the raw column names for per-column
    transformers such as ``StandardScaler``, ``"col_value"`` style names for one-hot encoders). When the
    transformers keep the columns one to one (same count and names, e.g. scaling or imputing), ``data`` holds
    the raw rows, so plots show values in the user's units; otherwise it holds the transformed rows.

    Args:
        pipeline: a fitted ``sklearn.pipeline.Pipeline`` ending in a ``ShapNetClassifier`` or
            ``ShapNetRegressor``.
        X: raw rows, ``(B, F_raw)`` array or DataFrame, as given to ``pipeline.predict``.

    Returns:
        ``shap.Explanation`` as :meth:`ShapNetClassifier.explain` returns, with the names and data above.
    """
    from sklearn.pipeline import Pipeline

    if not isinstance(pipeline, Pipeline) or not isinstance(pipeline[-1], _ShapNetEstimator):
        raise TypeError(
            "explain_pipeline needs a fitted sklearn Pipeline whose last step is a ShapNetClassifier or "
            f"ShapNetRegressor, got {type(pipeline).__name__}"
            + (f" ending in {type(pipeline[-1]).__name__}" if isinstance(pipeline, Pipeline) else "")
            + ". For the estimator alone use est.explain(X)."
        )
    transformers, final = pipeline[:-1], pipeline[-1]
    check_is_fitted(final)
    transformed = transformers.transform(X) if len(transformers) else X
    ex = final.explain(transformed)
    raw_names = [str(c) for c in X.columns] if hasattr(X, "columns") else None
    try:
        names = (
            [str(n) for n in transformers.get_feature_names_out(raw_names)]
            if len(transformers)
            else raw_names
        )
    except (AttributeError, ValueError, TypeError):  # a transformer without get_feature_names_out
        names = None
    n_raw = np.shape(X)[1] if np.ndim(X) == 2 else None
    one_to_one = n_raw == ex.values.shape[1] and (raw_names is None or names is None or names == raw_names)
    if one_to_one:
        ex.data = np.asarray(X, dtype=np.float64)
        names = names if names is not None else raw_names
    if names is not None and len(names) == ex.values.shape[1]:
        ex.feature_names = names
    return ex
