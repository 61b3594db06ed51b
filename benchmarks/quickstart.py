"""Train a Deep ShapNet on scikit-learn's breast-cancer data, print its test accuracy and the Shapley
values of one prediction (computed in the same forward pass).

    python -m benchmarks quickstart [--epochs 60] [--seed 0]
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from shapnet import DeepShapNet
from shapnet.datasets import load_dataset


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks quickstart", description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.manual_seed(args.seed)
    data = load_dataset("breast_cancer", random_state=args.seed)
    x_train, y_train = torch.from_numpy(data.X_train), torch.from_numpy(data.y_train)
    x_test, y_test = torch.from_numpy(data.X_test), torch.from_numpy(data.y_test)
    model = DeepShapNet(data.n_features, data.n_classes, channels=8, hidden=(32,))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3, weight_decay=1e-4)
    start = time.perf_counter()
    for _ in range(args.epochs):
        for batch in torch.randperm(len(x_train)).split(64):
            optimizer.zero_grad()
            F.cross_entropy(model(x_train[batch]), y_train[batch]).backward()
            optimizer.step()
    model.eval()
    with torch.no_grad():
        accuracy = (model(x_test).argmax(1) == y_test).float().mean().item()
        ex = model.explain(x_test[:1])
    print(f"DeepShapNet on breast_cancer: test accuracy {accuracy:.3f} ({time.perf_counter() - start:.1f} s training)")
    k = int(ex.predictions.argmax(1))
    print(f"\nShapley values of test sample 0 for class {data.class_names[k]!r} "
          f"(logit {ex.predictions[0, k]:.3f} = base {ex.base_values[0, k]:.3f} + sum of values):")
    order = ex.values[0, :, k].abs().argsort(descending=True)[:8]
    for i in order.tolist():
        print(f"  {data.feature_names[i]:<28} {ex.values[0, i, k].item():+.4f}")
    print(f"  ... ({data.n_features - 8} more); efficiency error {ex.efficiency_error().abs().max().item():.2e}")
    return 0
