"""Inference overhead of ShapNetClassifier.predict_proba: through skorch's forward vs the module directly.

Fits a default ``ShapNetClassifier`` (deep, a few epochs: the weights do not matter for timing) on a
synthetic table, then times, interleaved in one run, (a) ``predict_proba`` as the estimator does it now (the
module called directly in chunks of 4096 rows), (b) skorch's ``net_.forward`` as it did before (a DataLoader
of ``batch_size`` rows, then the softmax), (c) the raw module forward; on ``--rows`` rows and on shap's
typical call of 10 rows. Then times ``shap.Explainer(clf.predict_proba, background)`` on ``--explain`` rows
with each path.

Usage: ``python -m benchmarks.sklearn_inference [--rows 610] [--features 8] [--repeats 20]``.
Prints medians in ms and the ratios.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
import torch

from shapnet_adapters.sklearn import ShapNetClassifier


def softmax(logits: np.ndarray) -> np.ndarray:
    logits = logits - logits.max(1, keepdims=True)
    out = np.exp(logits)
    return out / out.sum(1, keepdims=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=610)
    parser.add_argument("--features", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument(
        "--explain", type=int, default=5, help="rows explained with shap's Permutation explainer (0: skip)"
    )
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(args.rows, args.features)).astype(np.float32)
    y = (X[:, 0] + 0.5 * X[:, 1] > 0).astype(int)
    clf = ShapNetClassifier(max_epochs=3, random_state=0).fit(X, y)

    def skorch_path(data: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            data = np.asarray(data, dtype=np.float32)  # as validate_data did before
            return softmax(clf.net_.forward(data, training=False).numpy().astype(np.float64))

    def raw(data: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return clf.model_(torch.from_numpy(data)).numpy()

    np.testing.assert_allclose(clf.predict_proba(X), skorch_path(X), rtol=1e-5, atol=1e-7)
    paths = {
        "predict_proba (direct)": clf.predict_proba,
        "skorch forward (before)": skorch_path,
        "raw module": raw,
    }
    times: dict[tuple[str, int], list[float]] = {}
    for _ in range(args.repeats):
        for rows in (args.rows, 10):
            for name, fn in paths.items():
                start = time.perf_counter()
                fn(X[:rows])
                times.setdefault((name, rows), []).append(time.perf_counter() - start)
    print(f"{'path':<26}{'rows':>6}{'median ms':>12}{'x raw':>8}")
    for (name, rows), values in times.items():
        ratio = np.median(values) / np.median(times[("raw module", rows)])
        print(f"{name:<26}{rows:>6}{1e3 * np.median(values):>12.2f}{ratio:>8.1f}")

    import shap

    background = X[:100]
    for name, fn in (("predict_proba (direct)", clf.predict_proba), ("skorch forward (before)", skorch_path))[
        : 2 if args.explain else 0
    ]:
        start = time.perf_counter()
        shap.Explainer(fn, background, algorithm="permutation")(X[: args.explain], silent=True)
        print(f"shap Permutation, {args.explain} rows, {name}: {time.perf_counter() - start:.2f} s")
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores shared with other jobs; torch threads "
        f"{torch.get_num_threads()}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
