"""``python -m shapnet.training``: train a ShapNet on a dataset, resumably, on one or many processes.

Writes ``result.json`` (test score, wall time, history), ``checkpoint.pt`` and ``model.pt`` into ``--out``;
running the same command again continues from the checkpoint. Image datasets get a
:class:`~shapnet.VisionShapNet`, tables a :class:`~shapnet.DeepShapNet`::

    python -m shapnet.training --dataset mnist --data-dir ../shared/data --epochs 3 --threads 1 \\
        --out results/mnist/default_e3

Under ``torchrun --nproc-per-node N -m shapnet.training ...`` every process trains its share of each global
batch with ``DistributedDataParallel`` (gloo on CPU, NCCL on CUDA); rank 0 writes the files.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

import torch

from .cli import add_dataset_arguments, dataset_from_args, fail_cleanly, portable
from .distributed import World, init_from_env
from .inputs import InputSpec
from .io import save
from .models import REFERENCE_RULES, DeepShapNet, ShapNet, Stage, VisionShapNet
from .training import DIGITS_STAGES, Task, _as_xy, _finish_score, _score_sums, fit

__all__ = ["build_model", "main", "parser"]

#: The training CLI's reference for image datasets: "mean" gave better accuracy and ROAD than "min" on MNIST
#: (docs/guide/training.md, "The reference of an image model").
DEFAULT_REFERENCE = "mean"


def _parse_stages(text: str | None) -> list[Stage] | None:
    if text is None:
        return None
    try:
        raw = json.loads(text)
        return [Stage(**{**s, "hidden": tuple(s.get("hidden", (32,)))}) for s in raw]
    except (json.JSONDecodeError, TypeError, AttributeError) as err:
        raise ValueError(
            f"--stages must be a JSON list of Stage fields, e.g. "
            f'\'[{{"out_channels": 16, "dilation": 1, "hidden": [32]}}]\', got {text!r}: {err}'
        ) from err


def build_model(dataset: Any, args: argparse.Namespace) -> ShapNet:
    """The CLI's model for ``dataset``: a VisionShapNet for images, else a DeepShapNet (``K = 1`` for
    regression)."""
    n_outputs = dataset.n_classes if dataset.task == "classification" else 1
    if dataset.image_shape is not None:
        channels, height, width = dataset.image_shape
        stages = _parse_stages(args.stages)
        if stages is None and dataset.name == "digits":
            stages = list(DIGITS_STAGES)
        kwargs: dict[str, Any] = {"image_size": (height, width), "prune": args.prune}
        if stages is not None:
            kwargs["stages"] = stages
        if args.readout_hidden is not None:
            kwargs["readout_hidden"] = tuple(args.readout_hidden)
        reference = getattr(args, "reference", DEFAULT_REFERENCE)
        return VisionShapNet(channels, n_outputs, reference=reference, **kwargs)
    return DeepShapNet(dataset.n_features, n_outputs, prune=args.prune)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m shapnet.training",
        description="Train a ShapNet (VisionShapNet for image datasets, DeepShapNet for tabular ones), "
        "resumably, and write result.json (test score, wall time), checkpoint.pt and model.pt to --out. "
        "Under torchrun, trains with DistributedDataParallel.",
    )
    add_dataset_arguments(p)
    p.add_argument("--out", required=True, help="output folder (created)")
    p.add_argument("--epochs", type=int, required=True)
    p.add_argument("--batch-size", type=int, default=64, help="samples per step, over all processes")
    p.add_argument("--lr", type=float, default=1e-2)
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--lr-schedule", choices=["cosine", "none"], default="cosine")
    p.add_argument("--l1", type=float, default=0.0)
    p.add_argument("--linf", type=float, default=0.0)
    p.add_argument("--reg-layers", choices=["last", "all"], default="last")
    p.add_argument("--consistency", type=float, default=0.0)
    p.add_argument("--n-coalitions", type=int, default=1)
    p.add_argument("--prune", type=float, default=None, help="fraction of features pruned per layer")
    p.add_argument("--stages", default=None, help="JSON list of Stage fields (image datasets)")
    p.add_argument("--readout-hidden", type=int, nargs="*", default=None)
    p.add_argument(
        "--reference",
        choices=REFERENCE_RULES,
        default=DEFAULT_REFERENCE,
        help="image datasets: what 'absent' means, taken from the training images per channel: "
        f"their mean or their minimum (the background) (default: {DEFAULT_REFERENCE})",
    )
    p.add_argument("--max-train", type=int, default=None, help="train on a random subset of this size")
    p.add_argument(
        "--eval-test-every-epoch",
        action="store_true",
        help="evaluate the test set after every epoch (recorded as val_*; monitoring only)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    p.add_argument("--device", default="auto", help="auto: cuda:LOCAL_RANK if CUDA is available, else cpu")
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch.set_num_threads (default: the cores divided by the processes on this machine)",
    )
    p.add_argument("--no-resume", action="store_true", help="ignore an existing checkpoint in --out")
    p.add_argument(
        "--no-test",
        action="store_true",
        help="skip the final test evaluation (test_* is then null), e.g. for timing runs",
    )
    p.add_argument(
        "--progress",
        choices=["auto", "none"],
        default="auto",
        help="progress of training and test evaluation (a bar on a terminal, plain lines in a log); "
        "one line per epoch is always printed",
    )
    return p


def _threads(requested: int | None) -> int:
    if requested is not None:
        return requested
    local = int(os.environ.get("LOCAL_WORLD_SIZE", 1))
    return max(1, (os.cpu_count() or 1) // local)


@torch.no_grad()
def _test_score(
    model: ShapNet, X: object, y: object, task: Task, world: World, device: torch.device, show: bool
) -> float:
    """The test score, each rank scoring every ``size``-th row, with progress over the batches."""
    from .progress import progress

    dtype = next(model.parameters()).dtype
    X_t, y_t = _as_xy(X, y, task, dtype)
    mine = torch.arange(world.rank, len(X_t), world.size)
    batches = mine.split(512)
    model.eval()
    hits = rows = 0.0
    for idx in progress(batches, desc="test", unit="batch", disable=not show):
        logits = model(X_t[idx].to(device)).cpu()
        h, r = _score_sums(logits, y_t[idx], task)
        hits, rows = hits + h, rows + r
    hits, rows = world.sum([hits, rows], device)
    return _finish_score(hits, rows, y_t, task)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the command line; returns the result written to ``--out/result.json``.

    A bad dataset name or path (or another bad option) ends with one line ``error: ...`` on stderr, exit
    status 2 and no ``--out`` left behind (:func:`shapnet.cli.fail_cleanly`).
    """
    args = parser().parse_args(argv)
    with fail_cleanly(args.out):
        return _run(args, argv)


def _run(args: argparse.Namespace, argv: Sequence[str] | None) -> dict[str, Any]:
    wall, cpu = time.perf_counter(), time.process_time()
    torch.set_num_threads(_threads(args.threads))
    world, device = init_from_env(args.device)
    show = args.progress == "auto" and world.is_main
    ds = dataset_from_args(args, random_state=args.seed, max_train=args.max_train)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(args.seed)  # the weights' initialisation (DDP then copies rank 0's to every rank)
        model = build_model(ds, args).to(device=device, dtype=getattr(torch, args.dtype))
    if world.is_main:
        os.makedirs(args.out, exist_ok=True)
    world.barrier()
    checkpoint = os.path.join(args.out, "checkpoint.pt")

    def report(row: dict[str, Any]) -> None:
        if world.is_main:
            print(
                json.dumps({k: round(v, 5) if isinstance(v, float) else v for k, v in row.items()}),
                flush=True,
            )

    result = fit(
        model,
        ds.X_train,
        ds.y_train,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        weight_decay=args.weight_decay,
        l1=args.l1,
        linf=args.linf,
        reg_layers=args.reg_layers,
        consistency=args.consistency,
        n_coalitions=args.n_coalitions,
        checkpoint=checkpoint,
        resume=not args.no_resume,
        progress=show,
        seed=args.seed,
        task=ds.task,
        lr_schedule=None if args.lr_schedule == "none" else "cosine",
        callback=report,
        X_val=ds.X_test if args.eval_test_every_epoch else None,
        y_val=ds.y_test if args.eval_test_every_epoch else None,
    )
    tic = time.perf_counter()
    test_score = (
        None if args.no_test else _test_score(model, ds.X_test, ds.y_test, ds.task, world, device, show)
    )
    test_seconds = time.perf_counter() - tic
    metric = "accuracy" if ds.task == "classification" else "r2"
    out = {
        "dataset": ds.name,
        "class_names": None if ds.class_names is None else list(ds.class_names),  # None: regression
        "command": "python -m shapnet.training " + " ".join(sys.argv[1:] if argv is None else argv),
        f"test_{metric}": test_score,
        "train_seconds": result.seconds,
        "test_seconds": test_seconds,
        "wall_seconds_this_call": time.perf_counter() - wall,
        # CPU time of this process (all threads): on a shared machine, a better measure of the work.
        "cpu_seconds_this_call": time.process_time() - cpu,
        "epochs": result.epochs,
        "resumed_from": result.resumed_from,
        "n_train": len(ds.X_train),
        "n_test": len(ds.X_test),
        "threads": torch.get_num_threads(),
        "processes": world.size,
        "dtype": args.dtype,
        "reference": getattr(model, "reference_rule", None),
        "n_parameters": int(sum(p.numel() for p in model.parameters())),
        "model": {"class": type(model).__name__, "config": model.config},
        "history": result.history,
    }
    if world.is_main:
        # Feature names and standardisation travel with the model: python -m shapnet.explain reads them.
        save(model, os.path.join(args.out, "model.pt"), inputs=InputSpec.from_dataset(ds))
        with open(os.path.join(args.out, "result.json"), "w") as fh:
            json.dump(portable(out), fh, indent=2)
        print(
            json.dumps({k: out[k] for k in ("dataset", f"test_{metric}", "train_seconds", "epochs")}),
            flush=True,
        )
    world.barrier()
    return out
