"""Save and load ShapNets as ``{format, version, class, config, state_dict, extra}``.

Loading uses ``torch.load(..., weights_only=True)``: nothing in the file is unpickled beyond tensors and plain
containers, so a checkpoint from an untrusted source cannot run code. A loaded model keeps the dtype it was
saved in. Every problem with a file (unreadable, foreign, newer format, a config that does not build the
model, weights that do not fit it, a non-finite reference) is a ``ValueError`` naming the file.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

import torch

from .harsanyi import HarsanyiNet, VisionHarsanyiNet
from .models import DeepShapNet, ShallowShapNet, ShapNet, VisionShapNet

if TYPE_CHECKING:
    from .inputs import InputSpec

__all__ = ["MODEL_CLASSES", "VERSION", "load", "load_checkpoint", "save"]

FORMAT = "shapnet-checkpoint"
VERSION = 1
MODEL_CLASSES: dict[str, type[ShapNet]] = {
    cls.__name__: cls for cls in (ShallowShapNet, DeepShapNet, VisionShapNet, HarsanyiNet, VisionHarsanyiNet)
}
# What torch.load(weights_only=True) reads back: plain containers, scalars, strings and tensors.
_PLAIN = (type(None), bool, int, float, complex, str, bytes, torch.Size, torch.dtype, torch.device)
_CONTAINERS = (dict, list, tuple, set)


def _check_extra(value: object, where: str) -> None:
    """Refuse (``ValueError``) anything in ``extra`` that a ``weights_only`` load would reject."""
    if isinstance(value, torch.Tensor) or type(value) in _PLAIN:
        return
    if isinstance(value, dict) and type(value) in (dict, OrderedDict):
        for key, item in value.items():
            _check_extra(key, f"{where} key {key!r}")
            _check_extra(item, f"{where}[{key!r}]")
        return
    if type(value) in _CONTAINERS and isinstance(value, (list, tuple, set)):  # dicts: above
        for index, item in enumerate(value):
            _check_extra(item, f"{where}[{index}]")
        return
    hint = (
        " Convert NumPy values with .item() or torch.as_tensor()."
        if type(value).__module__ == "numpy"
        else ""
    )
    raise ValueError(
        f"{where} is a {type(value).__module__}.{type(value).__qualname__}, which a checkpoint cannot hold: "
        "shapnet.load reads files with torch.load(weights_only=True), which accepts only tensors, numbers, "
        f"strings, bytes, None and dict/list/tuple/set of those.{hint}"
    )


def save(
    model: ShapNet,
    path: str | os.PathLike,
    *,
    extra: dict[str, Any] | None = None,
    inputs: InputSpec | None = None,
) -> None:
    """Write ``model`` (class name, constructor config and weights, in the model's dtype) to ``path``.

    Args:
        model: a ShapNet.
        path: destination file (written atomically).
        extra: optional plain data stored alongside (e.g. training epoch, optimizer state): tensors, numbers,
            strings, bytes, None and dict/list/tuple/set of those. Anything else raises ``ValueError`` before
            a file is written.
        inputs: the feature names, standardisation and output names the model was trained with
            (:class:`shapnet.InputSpec`), so ``python -m shapnet.explain`` transforms raw tables the same way.
    """
    if type(model).__name__ not in MODEL_CLASSES:
        raise TypeError(f"save expects one of {sorted(MODEL_CLASSES)}, got {type(model).__name__}.")
    if extra is not None and not isinstance(extra, dict):
        raise TypeError(f"extra must be a dict or None, got {type(extra).__name__}.")
    _check_extra(extra or {}, "extra")
    if inputs is not None:
        inputs.check_model(model)
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "class": type(model).__name__,
        "config": model.config,
        "state_dict": model.state_dict(),
        "extra": extra or {},
        "inputs": None if inputs is None else inputs.to_dict(),
    }
    tmp = f"{os.fspath(path)}.tmp"
    torch.save(payload, tmp)
    os.replace(tmp, path)  # atomic: an interrupted save never leaves a half-written checkpoint


def load_checkpoint(
    path: str | os.PathLike, map_location: str | torch.device | None = "cpu"
) -> dict[str, Any]:
    """Read and validate a checkpoint written by :func:`save` (``weights_only=True``: nothing is
    unpickled)."""
    name = repr(os.fspath(path))
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as err:  # torch raises several types for foreign or truncated files
        raise ValueError(
            f"{name} is not a readable shapnet checkpoint (expected a file written by "
            f"shapnet.save): {type(err).__name__}: {err}"
        ) from err
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        got = sorted(map(str, payload))[:5] if isinstance(payload, dict) else type(payload).__name__
        raise ValueError(
            f"{name} is not a shapnet checkpoint: expected a dict with format={FORMAT!r} "
            f"(written by shapnet.save), got {got}."
        )
    version = payload.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or not 1 <= version <= VERSION:
        raise ValueError(
            f"{name} has checkpoint format version {version!r}, but this shapnet reads versions "
            f"1 to {VERSION}"
            + (
                ": it was written by a newer shapnet; upgrade shapnet to load it."
                if isinstance(version, int) and not isinstance(version, bool) and version > VERSION
                else "."
            )
        )
    if payload.get("class") not in MODEL_CLASSES:
        raise ValueError(
            f"unknown model class {payload.get('class')!r} in {name}; "
            f"expected one of {sorted(MODEL_CLASSES)}."
        )
    for key, kind in (("config", dict), ("state_dict", dict), ("extra", dict)):
        if not isinstance(payload.get(key), kind):
            raise ValueError(
                f"{name} is damaged: its {key!r} entry should be a dict, "
                f"got {type(payload.get(key)).__name__}."
            )
    return payload


def _state_dtype(state: dict[str, Any]) -> torch.dtype | None:
    """The floating dtype of a state dict's tensors (the reference's if they disagree), or None."""
    reference = state.get("reference")
    if isinstance(reference, torch.Tensor) and reference.is_floating_point():
        return reference.dtype
    dtypes = {t.dtype for t in state.values() if isinstance(t, torch.Tensor) and t.is_floating_point()}
    return dtypes.pop() if len(dtypes) == 1 else None


def load(path: str | os.PathLike, map_location: str | torch.device | None = "cpu") -> ShapNet:
    """Rebuild the model saved at ``path``, in the dtype it was saved in."""
    name = repr(os.fspath(path))
    payload = load_checkpoint(path, map_location)
    cls, config, state = payload["class"], payload["config"], payload["state_dict"]
    try:
        model = MODEL_CLASSES[cls](**config)
    except (TypeError, ValueError, KeyError) as err:
        raise ValueError(f"{name}: its config does not build a {cls} ({type(err).__name__}: {err}).") from err
    dtype = _state_dtype(state)
    if dtype is not None:
        model = model.to(dtype)
    try:
        model.load_state_dict(state)
    except (RuntimeError, KeyError, TypeError) as err:
        raise ValueError(
            f"{name}: the saved weights do not fit a {cls} built from the saved config (edited file, or "
            f"saved "
            f"by an incompatible version?): {err}"
        ) from err
    if not bool(torch.isfinite(model.reference).all()):
        raise ValueError(f"{name}: the saved reference contains NaN or inf; every value would be NaN.")
    return model
