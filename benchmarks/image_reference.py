"""Which reference should a VisionShapNet use? ``"mean"`` against ``"min"`` on an image set (MNIST).

    python -m benchmarks image_reference --dataset mnist [--data-dir DIR] [--max-train 10000] [--epochs 1]
        [--n-explain 200] [--out results/image_reference]

For each reference rule it trains the training CLI's VisionShapNet (``python -m shapnet.training ...
--reference RULE --out OUT/RULE``: resumable, the same command as by hand) and measures, on its test images:

* ``test_accuracy`` (the whole test set, from the CLI's ``result.json``);
* ``road_morf`` (lower is better) and ``road_lerf`` (higher is better): Quantus ROAD (Rong et al., 2022;
  noisy linear imputation, noise 0.01, 5, 15, ..., 95 % of the pixels removed), the mean over the
  percentages of the accuracy of still predicting the originally predicted class, removing the pixels with
  the largest (MoRF) or smallest (LeRF) Shapley value of that class first, on the first ``--n-explain``
  test images; ``road_random`` is the same with a random ranking (the control);
* ``background_share``: per image, the share of the predicted class's ``|phi|`` that lies on pixels whose
  raw value is 0 (black background), summarised by its mean, median and 10th / 90th percentiles.

ROAD fills removed pixels from their neighbours, not with the reference, so it measures both models on the
same footing. Writes ``image_reference.json``, ``image_reference.csv`` and ``image_reference.png``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from shapnet.cli import add_dataset_arguments, dataset_from_args, fail_cleanly
from shapnet.io import load
from shapnet.models import REFERENCE_RULES
from shapnet.train_cli import main as train_main

from ._common import better, figure, format_table, machine_info, prepare_out, write_csv, write_json

__all__ = ["ROAD_PERCENTAGES", "background_share", "road_curve", "main"]

ROAD_PERCENTAGES = list(range(5, 100, 10))
COLUMNS = [
    "reference",
    "test_accuracy",
    "road_morf",
    "road_lerf",
    "road_random",
    "background_share_mean",
    "background_share_median",
    "background_share_p10",
    "background_share_p90",
]


def background_share(values: np.ndarray, background: np.ndarray) -> np.ndarray:
    """Per image, ``sum |phi|`` over background pixels divided by ``sum |phi|`` over all pixels.

    Args:
        values: ``(N, H, W)`` one class's Shapley values per pixel.
        background: ``(N, H, W)`` bool, True where the raw pixel is 0.
    """
    magnitude = np.abs(values).reshape(len(values), -1)
    total = magnitude.sum(1)
    return np.divide(
        (magnitude * background.reshape(len(values), -1)).sum(1),
        total,
        out=np.zeros_like(total),
        where=total > 0,
    )


def road_curve(
    model: torch.nn.Module, x: np.ndarray, target: np.ndarray, ranking: np.ndarray
) -> dict[int, float]:
    """Quantus ROAD: ``{percentage removed: accuracy of predicting target}``, most-ranked pixels first.

    Args:
        x: ``(N, C, H, W)`` images; target: ``(N,)`` classes; ranking: ``(N, C, H, W)``, >= 0, larger first.
    """
    import quantus

    road = quantus.ROAD(
        percentages=ROAD_PERCENTAGES, noise=0.01, abs=False, disable_warnings=True, display_progressbar=False
    )
    curve = road(
        model=model,
        x_batch=x,
        y_batch=target,
        a_batch=ranking,
        softmax=False,
        channel_first=True,
        device="cpu",
        batch_size=len(x),
    )
    return {int(p): float(a) for p, a in curve.items()}


def _rank_from_top(values: np.ndarray) -> np.ndarray:
    """Non-negative scores with the same order (Quantus rejects all-negative attributions)."""
    flat = values.reshape(len(values), -1)
    return (flat - flat.min(1, keepdims=True)).reshape(values.shape)


def _measure(model: torch.nn.Module, x: np.ndarray, raw_zero: np.ndarray, seed: int) -> dict[str, Any]:
    with torch.no_grad():
        ex = model.explain(torch.from_numpy(x))
    target = ex.predictions.argmax(1).numpy()
    values = ex.values.numpy()[np.arange(len(x)), :, :, target]  # (N, H, W): the predicted class
    scores = values[:, None]  # (N, 1, H, W): one channel, as the images
    random = np.random.default_rng(seed).random(scores.shape).astype(np.float32)
    curves = {
        "morf": road_curve(model, x, target, _rank_from_top(scores)),
        "lerf": road_curve(model, x, target, _rank_from_top(-scores)),
        "random": road_curve(model, x, target, random),
    }
    share = background_share(values, raw_zero)
    return {
        **{f"road_{k}": float(np.mean(list(c.values()))) for k, c in curves.items()},
        "background_share_mean": float(share.mean()),
        "background_share_median": float(np.median(share)),
        "background_share_p10": float(np.percentile(share, 10)),
        "background_share_p90": float(np.percentile(share, 90)),
        "curves": curves,
    }


def _trained(path: Path, rule: str, epochs: int, n_train: int) -> dict[str, Any] | None:
    """A finished, tested run with these settings in ``path`` (its result.json): a rerun reuses it."""
    if not path.exists():
        return None
    done = json.loads(path.read_text())
    settings = (done.get("reference"), done.get("epochs"), done.get("n_train"))
    return done if settings == (rule, epochs, n_train) and done.get("test_accuracy") is not None else None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks image_reference", description=__doc__.split("\n")[0]
    )
    add_dataset_arguments(p, default="mnist")
    p.add_argument("--out", default="results/image_reference")
    p.add_argument("--max-train", type=int, default=10000)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--n-explain", type=int, default=200, help="test images explained for ROAD and the shares")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--stages", default=None, help="passed to the training CLI (JSON list of Stage fields)")
    args = p.parse_args(argv)
    with fail_cleanly(args.out):
        out = prepare_out(args.out)
        data = dataset_from_args(args, random_state=args.seed, max_train=args.max_train)
        if data.image_shape is None:
            raise ValueError(f"--dataset must be an image set, got the table {data.name!r}.")
        torch.set_num_threads(args.threads)
        x = data.X_test[: args.n_explain]
        raw_zero = np.isclose(x[:, 0], (0.0 - data.mean[0]) / data.scale[0], atol=1e-5)  # raw value 0
        rows: list[dict[str, Any]] = []
        for rule in REFERENCE_RULES:
            train_argv = [
                "--dataset",
                args.dataset,
                "--max-train",
                str(args.max_train),
                "--epochs",
                str(args.epochs),
                "--threads",
                str(args.threads),
                "--seed",
                str(args.seed),
                "--reference",
                rule,
                "--out",
                str(out / rule),
            ]
            for option, value in (("--data-dir", args.data_dir), ("--stages", args.stages)):
                train_argv += [option, value] if value else []
            trained = _trained(
                out / rule / "result.json", rule, args.epochs, len(data.X_train)
            ) or train_main(train_argv)
            model = load(out / rule / "model.pt").eval()
            rows.append(
                {
                    "reference": rule,
                    "test_accuracy": trained["test_accuracy"],
                    "train_command": trained["command"],
                    **_measure(model, x, raw_zero, args.seed),
                }
            )
    headers = {"road_morf": better("road_morf", "lower"), "road_lerf": better("road_lerf", "higher")}
    table = [{headers.get(k, k): r[k] for k in COLUMNS} for r in rows]
    print(format_table(table))
    write_csv(out / "image_reference.csv", [{k: r[k] for k in COLUMNS} for r in rows])
    write_json(
        out / "image_reference.json",
        {
            "settings": {
                **vars(args),
                "road_percentages": ROAD_PERCENTAGES,
                "raw_zero_pixel_fraction": float(raw_zero.mean()),
            },
            "machine": machine_info(),
            "rows": rows,
        },
    )
    with figure(out / "image_reference.png", 1, 2, figsize=(10, 4)) as (_, axes):
        for ax, kind in zip(axes, ("morf", "lerf"), strict=True):
            for r in rows:
                curve = r["curves"][kind]
                ax.plot(list(curve), list(curve.values()), marker="o", label=f"reference={r['reference']}")
            ax.plot(
                ROAD_PERCENTAGES,
                list(rows[0]["curves"]["random"].values()),
                ls="--",
                color="grey",
                label=f"random ranking (reference={rows[0]['reference']})",
            )
            ax.set_xlabel("% of pixels removed (noisy linear imputation)")
            ax.set_ylabel("accuracy of the original prediction")
            ax.set_title(
                f"ROAD {kind.upper()} on {data.name} ("
                + ("lower" if kind == "morf" else "higher")
                + " is better)"
            )
            ax.legend()
    print(json.dumps({r["reference"]: r["test_accuracy"] for r in rows}))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
