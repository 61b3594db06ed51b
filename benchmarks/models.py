"""Model kinds for the remove-and-retrain benchmarks, and a small seeded trainer.

Three kinds, each for tabular data ``(B, F)`` and images ``(B, C, H, W)``:

* ``deep``: a :class:`shapnet.DeepShapNet` (tabular) or a small :class:`shapnet.VisionShapNet` (images);
* ``shallow``: a :class:`shapnet.ShallowShapNet` on all feature pairs (tabular only);
* ``mlp``: a plain ReLU MLP (images are flattened), built from ``nn.ReLU`` modules so that gradient and
  DeepLift-style post-hoc methods see an ordinary network.

ROAR retrains one model per cell (often a hundred or more per run), so training is short
(:func:`train_model`: the project's loop :func:`shapnet.training.fit` with Adam, a constant learning rate and
no penalties): shuffling from a per-call ``torch.Generator``, the global RNG touched only to initialise
weights (under a lock, so threads of one process, e.g. an in-process Dask worker, cannot interleave seeding
and initialisation), and one intra-op thread (:func:`single_thread`) so that the
result depends on the seed only, not on the machine's thread count or on other jobs.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from shapnet import DeepShapNet, ShallowShapNet, Stage, VisionShapNet
from shapnet.training import fit

__all__ = [
    "MODEL_KINDS",
    "ModelConfig",
    "default_config",
    "build_model",
    "train_model",
    "accuracy",
    "predict",
    "with_overrides",
    "single_thread",
    "weights_hash",
]

ModelKind = Literal["deep", "shallow", "mlp"]
MODEL_KINDS: tuple[str, ...] = ("deep", "shallow", "mlp")

# Seeding the global RNG and initialising weights must not interleave between threads of one process.
_INIT_LOCK = threading.Lock()


@dataclass(frozen=True)
class ModelConfig:
    """A model kind plus its architecture and training hyperparameters (everything but the seed).

    Attributes:
        kind: ``"deep"``, ``"shallow"`` or ``"mlp"``.
        hidden: hidden widths of each Shapley module's MLP (``deep``/``shallow``), or of the MLP (``mlp``).
        channels: channels of a DeepShapNet's hidden stages.
        stages: VisionShapNet stages as dicts (``deep`` on images); None: two 2x2 stages (dilations 1, 2).
        readout_hidden: hidden widths of a VisionShapNet's 1x1 readout.
        epochs, batch_size, lr, weight_decay: the training recipe of :func:`train_model`.
    """

    kind: ModelKind = "deep"
    hidden: tuple[int, ...] = (16,)
    channels: int = 8
    stages: tuple[dict, ...] | None = None
    readout_hidden: tuple[int, ...] = (16,)
    epochs: int = 20
    batch_size: int = 128
    lr: float = 3e-3
    weight_decay: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in MODEL_KINDS:
            raise ValueError(f"model kind must be one of {', '.join(MODEL_KINDS)}, got {self.kind!r}.")
        for name in ("epochs", "batch_size", "channels"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"ModelConfig.{name} must be a positive int, got {value!r}.")
        if not self.lr > 0:
            raise ValueError(f"ModelConfig.lr must be > 0, got {self.lr!r}.")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (tuples become lists)."""
        out = asdict(self)
        out["hidden"], out["readout_hidden"] = list(self.hidden), list(self.readout_hidden)
        out["stages"] = None if self.stages is None else [dict(s) for s in self.stages]
        return out


def _stage(dilation: int) -> dict:
    return {"out_channels": 8, "kernel_size": 2, "dilation": dilation, "hidden": (16,)}


#: Three 2x2 Shapley-convolution stages (dilations 1, 2, 4: each pixel's receptive field spans the whole
#: 8x8 image) of 8 channels: about half the training cost of two 16-channel stages, and more accurate
#: on digits (0.94 against 0.88 test accuracy at equal epochs in our probe).
SMALL_VISION_STAGES: tuple[dict, ...] = tuple(_stage(d) for d in (1, 2, 4))
#: The same with a fourth stage (dilation 8) for 28x28 MNIST.
MNIST_VISION_STAGES: tuple[dict, ...] = tuple(_stage(d) for d in (1, 2, 4, 8))


def default_config(kind: str, dataset: str, **overrides: Any) -> ModelConfig:
    """The benchmark's default model and training recipe for ``kind`` on ``dataset``.

    Chosen so that one retraining takes about a second or two on one core for the small sets, since a
    default ROAR run retrains well over a hundred models. ``overrides`` (non-None) replace fields.
    """
    base: dict[str, Any] = {"kind": kind}
    if dataset in ("digits", "mnist"):
        if kind == "mlp":
            base.update(hidden=(128, 64), epochs=15 if dataset == "digits" else 3, batch_size=64, lr=3e-3)
        else:
            stages = SMALL_VISION_STAGES if dataset == "digits" else MNIST_VISION_STAGES
            base.update(stages=stages, epochs=6 if dataset == "digits" else 2, batch_size=128, lr=1e-2)
    elif kind == "mlp":
        base.update(hidden=(64, 32))
    elif kind == "shallow":
        base.update(hidden=(8,))
    if dataset == "adult":
        base.update(epochs=3, batch_size=256)
    base.update({k: v for k, v in overrides.items() if v is not None})
    return ModelConfig(**base)


def build_model(
    config: ModelConfig, input_shape: Sequence[int], n_classes: int, *, seed: int, reference: np.ndarray | None = None
) -> nn.Module:
    """A freshly initialised model of ``config.kind``, its weights drawn from ``seed``.

    Args:
        config: the kind and architecture.
        input_shape: ``(F,)`` or ``(C, H, W)``.
        n_classes: ``K``.
        seed: seeds the weight initialisation (the global RNG is restored afterwards).
        reference: a ShapNet's reference, ``input_shape``-shaped; None: zeros. Ignored by ``mlp``.

    Returns:
        The model in eval mode, float32.
    """
    input_shape = tuple(int(s) for s in input_shape)
    if len(input_shape) not in (1, 3):
        raise ValueError(f"input_shape must be (F,) or (C, H, W), got {input_shape}.")
    image = len(input_shape) == 3
    ref = None if reference is None else torch.as_tensor(np.asarray(reference, dtype=np.float32))
    with _INIT_LOCK, torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        if config.kind == "mlp":
            width = int(np.prod(input_shape))
            layers: list[nn.Module] = [nn.Flatten()] if image else []
            for h in config.hidden:
                layers += [nn.Linear(width, h), nn.ReLU()]
                width = h
            layers.append(nn.Linear(width, n_classes))
            model: nn.Module = nn.Sequential(*layers)
        elif config.kind == "shallow":
            if image:
                raise ValueError(
                    "model kind 'shallow' is for tabular data (input (F,)), got an image input "
                    f"{input_shape}; use --model deep (a VisionShapNet) or mlp for images."
                )
            model = ShallowShapNet(input_shape[0], n_classes, groups="pairs", hidden=config.hidden, reference=ref)
        elif image:
            stages = [Stage(**{**s, "hidden": tuple(s["hidden"])}) for s in (config.stages or SMALL_VISION_STAGES)]
            model = VisionShapNet(
                input_shape[0], n_classes, stages=stages, image_size=input_shape[1:],
                readout_hidden=config.readout_hidden, reference=ref,
            )
        else:
            model = DeepShapNet(
                input_shape[0], n_classes, channels=config.channels, hidden=config.hidden, reference=ref
            )
    return model.eval()


@contextlib.contextmanager
def single_thread() -> Iterator[None]:
    """Run the block with one intra-op torch thread (restored afterwards).

    One thread makes a training run bit-reproducible across machines and worker layouts, and lets
    ``--n-jobs`` workers share the cores without oversubscription.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def train_model(
    model: nn.Module, X: np.ndarray | torch.Tensor, y: np.ndarray | torch.Tensor, config: ModelConfig, *, seed: int
) -> nn.Module:
    """Train ``model`` in place with Adam and cross-entropy; shuffling is drawn from ``seed``.

    Args:
        model: any classifier returning logits ``(B, K)``.
        X: ``(N, *input_shape)`` float32.
        y: ``(N,)`` class indices.
        config: epochs, batch size, learning rate, weight decay.
        seed: seeds the minibatch order (a private ``torch.Generator``; the global RNG is not used).

    Returns:
        ``model``, in eval mode.
    """
    X_t = np.asarray(X, dtype=np.float32)
    y_t = np.asarray(y)
    if len(X_t) != len(y_t) or len(X_t) == 0:
        raise ValueError(f"X and y must be non-empty with equal lengths, got {len(X_t)} and {len(y_t)}.")
    # The project's one training loop, with this benchmark's recipe: Adam, constant lr, no penalties.
    fit(
        model, X_t, y_t, epochs=config.epochs, batch_size=config.batch_size, lr=config.lr,
        weight_decay=config.weight_decay, optimizer="adam", lr_schedule=None, seed=seed, progress=False,
    )
    return model.eval()


@torch.no_grad()
def predict(model: nn.Module, X: np.ndarray | torch.Tensor, batch_size: int = 256) -> np.ndarray:
    """Predicted class indices ``(N,)`` of ``model`` on ``X`` ``(N, *input_shape)``."""
    X_t = torch.as_tensor(np.asarray(X, dtype=np.float32))
    model.eval()
    out = [model(X_t[i : i + batch_size]).argmax(1) for i in range(0, len(X_t), batch_size)]
    return torch.cat(out).numpy() if out else np.zeros(0, dtype=np.int64)


def accuracy(model: nn.Module, X: np.ndarray | torch.Tensor, y: np.ndarray | torch.Tensor) -> float:
    """Test accuracy of ``model`` on ``(X, y)``."""
    return float((predict(model, X) == np.asarray(y)).mean())


def weights_hash(model: nn.Module) -> str:
    """A SHA-256 of the model's class name, parameter and buffer names, shapes and bytes (hex, 16 chars)."""
    import hashlib

    digest = hashlib.sha256(type(model).__name__.encode())
    for name, tensor in sorted(model.state_dict().items()):
        array = tensor.detach().cpu().contiguous().numpy()
        digest.update(f"{name}:{array.dtype}:{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()[:16]


def with_overrides(config: ModelConfig, **overrides: Any) -> ModelConfig:
    """``config`` with the non-None ``overrides`` replaced."""
    return replace(config, **{k: v for k, v in overrides.items() if v is not None})
