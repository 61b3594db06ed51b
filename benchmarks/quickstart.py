"""Train a Deep ShapNet on scikit-learn's breast-cancer data, print its test accuracy and the Shapley
values of one prediction (computed in the same forward pass).

    python -m benchmarks quickstart [--epochs 60] [--seed 0]
"""

from __future__ import annotations

import argparse

import torch

from shapnet import DeepShapNet
from shapnet.datasets import load_dataset
from shapnet.training import evaluate, fit


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks quickstart", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    data = load_dataset("breast_cancer", random_state=args.seed)
    torch.manual_seed(args.seed)
    model = DeepShapNet(data.n_features, data.n_classes, channels=8, hidden=(32,))
    result = fit(
        model,
        data.X_train,
        data.y_train,
        epochs=args.epochs,
        batch_size=64,
        lr=3e-3,
        weight_decay=1e-4,
        optimizer="adam",
        lr_schedule=None,
        seed=args.seed,
    )
    accuracy = evaluate(model, data.X_test, data.y_test)
    with torch.no_grad():
        ex = model.explain(torch.from_numpy(data.X_test[:1]))
    print(f"DeepShapNet on breast_cancer: test accuracy {accuracy:.3f} ({result.seconds:.1f} s training)")
    k = int(ex.predictions.argmax(1))
    print(
        f"\nShapley values of test sample 0 for class {data.class_names[k]!r} "
        f"(logit {ex.predictions[0, k]:.3f} = base {ex.base_values[0, k]:.3f} + sum of values):"
    )
    order = ex.values[0, :, k].abs().argsort(descending=True)[:8]
    for i in order.tolist():
        print(f"  {data.feature_names[i]:<28} {ex.values[0, i, k].item():+.4f}")
    print(
        f"  ... ({data.n_features - 8} more); efficiency error {ex.efficiency_error().abs().max().item():.2e}"
    )
    return 0
