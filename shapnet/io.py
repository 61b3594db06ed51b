"""Save and load ShapNets as ``{format, class, config, state_dict}``, loaded with ``weights_only=True``."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import torch

from .harsanyi import HarsanyiNet, VisionHarsanyiNet
from .models import DeepShapNet, ShallowShapNet, ShapNet, VisionShapNet

if TYPE_CHECKING:
    from .inputs import InputSpec

__all__ = ["save", "load", "MODEL_CLASSES"]

FORMAT = "shapnet-checkpoint"
VERSION = 1
MODEL_CLASSES: dict[str, type[ShapNet]] = {
    cls.__name__: cls
    for cls in (ShallowShapNet, DeepShapNet, VisionShapNet, HarsanyiNet, VisionHarsanyiNet)
}


def save(
    model: ShapNet,
    path: str | os.PathLike,
    *,
    extra: dict[str, Any] | None = None,
    inputs: InputSpec | None = None,
) -> None:
    """Write ``model`` (class name, constructor config and weights) to ``path``.

    Args:
        model: a ShapNet.
        path: destination file.
        extra: optional plain data stored alongside (e.g. training epoch, optimizer state).
        inputs: the feature names, standardisation and output names the model was trained with
            (:class:`shapnet.InputSpec`), so ``python -m shapnet.explain`` transforms raw tables the same way.
    """
    if type(model).__name__ not in MODEL_CLASSES:
        raise TypeError(f"save expects one of {sorted(MODEL_CLASSES)}, got {type(model).__name__}.")
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


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device | None = "cpu") -> dict[str, Any]:
    """Read and validate a checkpoint written by :func:`save` (``weights_only=True``: nothing is unpickled)."""
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as err:  # torch raises several types for foreign or truncated files
        raise ValueError(
            f"{os.fspath(path)!r} is not a readable shapnet checkpoint (expected a file written by "
            f"shapnet.save): {type(err).__name__}: {err}"
        ) from err
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        got = sorted(payload)[:5] if isinstance(payload, dict) else type(payload).__name__
        raise ValueError(
            f"{os.fspath(path)!r} is not a shapnet checkpoint: expected a dict with format={FORMAT!r} "
            f"(written by shapnet.save), got {got}."
        )
    if payload.get("class") not in MODEL_CLASSES:
        raise ValueError(f"unknown model class {payload.get('class')!r} in {os.fspath(path)!r}; "
                         f"expected one of {sorted(MODEL_CLASSES)}.")
    return payload


def load(path: str | os.PathLike, map_location: str | torch.device | None = "cpu") -> ShapNet:
    """Rebuild the model saved at ``path``."""
    payload = load_checkpoint(path, map_location)
    model = MODEL_CLASSES[payload["class"]](**payload["config"])
    model.load_state_dict(payload["state_dict"])
    return model
