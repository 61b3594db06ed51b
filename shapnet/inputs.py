"""What a model's input columns are and how raw table columns become them (recorded in checkpoints).

A ShapNet sees ``F`` standardised features; a user's table has raw columns. :class:`InputSpec` records the
mapping that training used, so explaining a new table applies exactly the same transform:

- a feature whose name is a column of the table is numeric: ``(raw - mean) / scale``; a missing value is
  replaced by the training mean (so it becomes 0), as :func:`shapnet.datasets.from_frame` imputes;
- a feature named ``col=value`` whose ``col`` is a column (and that is not itself a column) is the one-hot
  indicator ``raw == value`` (compared as text), then ``(indicator - mean) / scale`` (0 and 1 for one-hot
  features written by :func:`shapnet.datasets.load_dataset`). A category not seen in training, or a missing
  one, gives 0 in every indicator of its column, as ``OneHotEncoder(handle_unknown="ignore")`` does.

Save it with the model (``shapnet.save(model, path, inputs=InputSpec.from_dataset(ds))``) and read it back
with :meth:`InputSpec.from_checkpoint`. Only plain lists, strings and floats are stored, so the checkpoint
still loads with ``weights_only=True``.

Example:
    >>> import pandas as pd
    >>> spec = InputSpec(["age", "sex=F"], mean=[40.0, 0.0], scale=[10.0, 1.0])
    >>> spec.transform(pd.DataFrame({"age": [30, 50], "sex": ["F", "M"]})).tolist()
    [[-1.0, 1.0], [1.0, 0.0]]
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["InputSpec"]


@dataclass(frozen=True, eq=False)
class InputSpec:
    """Feature names, standardisation and output names of a tabular model.

    Args:
        feature_names: ``F`` names, in the model's input order (numeric columns and ``col=value`` one-hots).
        mean: ``(F,)`` (or one value for all): subtracted from the raw value. Default 0.
        scale: ``(F,)`` (or one value): the centred value is divided by it. Default 1.
        output_names: ``K`` names of the model's outputs (class names), or None (``"0"``, ``"1"``, ...).
    """

    feature_names: tuple[str, ...]
    mean: np.ndarray
    scale: np.ndarray
    output_names: tuple[str, ...] | None = None

    def __init__(
        self,
        feature_names: Sequence[str],
        mean: Sequence[float] | np.ndarray | float = 0.0,
        scale: Sequence[float] | np.ndarray | float = 1.0,
        output_names: Sequence[str] | None = None,
    ) -> None:
        if isinstance(feature_names, str) or not all(isinstance(n, str) for n in feature_names):
            raise TypeError(f"feature_names must be a sequence of str, got {feature_names!r:.80}.")
        names = tuple(feature_names)
        if not names or len(set(names)) != len(names):
            raise ValueError(
                f"feature_names must be non-empty and unique, got {len(names)} names with "
                f"{len(names) - len(set(names))} duplicates."
            )
        n = len(names)
        mean_ = (
            np.broadcast_to(np.asarray(mean, dtype=np.float64).reshape(-1), (n,)).copy()
            if np.size(mean) in (1, n)
            else None
        )
        scale_ = (
            np.broadcast_to(np.asarray(scale, dtype=np.float64).reshape(-1), (n,)).copy()
            if np.size(scale) in (1, n)
            else None
        )
        if mean_ is None or scale_ is None:
            raise ValueError(
                f"mean and scale must have 1 or {n} values (one per feature), got "
                f"{np.size(mean)} and {np.size(scale)}."
            )
        if not (np.isfinite(mean_).all() and np.isfinite(scale_).all() and (scale_ != 0).all()):
            raise ValueError("mean must be finite and scale finite and non-zero for every feature.")
        if output_names is not None:
            output_names = tuple(str(o) for o in output_names)
        object.__setattr__(self, "feature_names", names)
        object.__setattr__(self, "mean", mean_)
        object.__setattr__(self, "scale", scale_)
        object.__setattr__(self, "output_names", output_names)

    @property
    def n_features(self) -> int:
        return len(self.feature_names)

    @classmethod
    def from_dataset(cls, dataset: Any) -> InputSpec:
        """The spec of a :class:`shapnet.datasets.Dataset`: feature names, ``mean``/``scale``, classes."""
        return cls(dataset.feature_names, dataset.mean, dataset.scale, dataset.class_names)

    def check_model(self, model: Any) -> None:
        """ValueError unless ``model`` takes ``F`` inputs (``prod(input_shape)``) and the named outputs."""
        n_inputs = int(np.prod(model.input_shape))
        if self.n_features != n_inputs:
            shown = ", ".join(self.feature_names[:6]) + (", ..." if self.n_features > 6 else "")
            raise ValueError(
                f"the {type(model).__name__} takes {n_inputs} input features but the input spec has "
                f"{self.n_features} ({shown}); give the model's feature columns (or save the model with "
                "inputs=InputSpec.from_dataset(dataset))."
            )
        if self.output_names is not None and len(self.output_names) != model.n_outputs:
            raise ValueError(
                f"the {type(model).__name__} has {model.n_outputs} outputs but the input spec "
                f"names {len(self.output_names)}: {list(self.output_names)}."
            )

    def to_dict(self) -> dict[str, Any]:
        """Plain data for a checkpoint (loadable with ``weights_only=True``)."""
        return {
            "feature_names": list(self.feature_names),
            "mean": [float(v) for v in self.mean],
            "scale": [float(v) for v in self.scale],
            "output_names": None if self.output_names is None else list(self.output_names),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> InputSpec:
        if not isinstance(data, dict) or "feature_names" not in data:
            raise ValueError(f"an input spec must be a dict with 'feature_names', got {data!r:.80}.")
        return cls(
            data["feature_names"], data.get("mean", 0.0), data.get("scale", 1.0), data.get("output_names")
        )

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike) -> InputSpec | None:
        """The spec saved with the model at ``path`` (``shapnet.save(..., inputs=...)``), or None."""
        from .io import load_checkpoint

        data = load_checkpoint(path).get("inputs")
        return None if data is None else cls.from_dict(data)

    def _sources(self, columns: Iterable[str]) -> list[tuple[str, str | None]]:
        """Per feature ``(column, None)`` (numeric) or ``(column, value)`` (one-hot); ValueError if absent."""
        available = set(columns)
        sources: list[tuple[str, str | None]] = []
        missing = []
        for name in self.feature_names:
            if name in available:
                sources.append((name, None))
                continue
            col, sep, value = name.partition("=")
            if sep and col in available:
                sources.append((col, value))
            else:
                missing.append(name)
        if missing:
            shown = ", ".join(repr(m) for m in missing[:8]) + (" ..." if len(missing) > 8 else "")
            raise ValueError(
                f"the input has no column for {len(missing)} of the model's {self.n_features} features: "
                f"{shown} (a feature 'col=value' needs the column 'col'). Input columns: "
                f"{sorted(available)[:12]}."
            )
        return sources

    def columns(self, available: Iterable[str]) -> list[str]:
        """The raw columns, among ``available``, that :meth:`transform` reads (in first-use order)."""
        return list(dict.fromkeys(col for col, _ in self._sources(available)))

    def transform(self, frame: Any) -> np.ndarray:
        """``(B, F)`` float64 model inputs from a pandas DataFrame of raw columns.

        Raises:
            ValueError: a feature's column is absent, or a numeric column holds non-numeric values.
        """
        sources = self._sources(frame.columns)
        out = np.empty((len(frame), self.n_features), dtype=np.float64)
        as_text: dict[str, np.ndarray] = {}
        for j, (col, value) in enumerate(sources):
            if value is None:
                try:
                    raw = frame[col].to_numpy(dtype=np.float64)
                except (TypeError, ValueError) as err:
                    raise ValueError(
                        f"column {col!r} must be numeric (the model standardises it), but {err}."
                    ) from err
                out[:, j] = np.where(np.isnan(raw), self.mean[j], raw)  # the training mean, as from_frame
            else:
                if col not in as_text:
                    series = frame[col]
                    as_text[col] = series.astype(str).to_numpy(dtype=object)
                    as_text[col][series.isna().to_numpy()] = None  # missing: no indicator set
                out[:, j] = as_text[col] == value
        out -= self.mean
        out /= self.scale
        return out

    def __repr__(self) -> str:
        shown = ", ".join(self.feature_names[:4]) + (", ..." if self.n_features > 4 else "")
        return f"InputSpec({self.n_features} features: {shown}; outputs={self.output_names})"
