"""The benchmarks, name -> one-line summary; each is the module ``benchmarks.<name>`` with ``main(argv)``."""

from __future__ import annotations

BENCHMARKS: dict[str, str] = {
    "quickstart": "train a Deep ShapNet on breast_cancer, show accuracy and one explanation",
    "consistency": "sweep the Shapley-consistency weight: fidelity to exact Shapley values, accuracy, cost",
    "roar": "ROAR/KAR remove-and-retrain: accuracy as each method's top features are replaced (resumable, Dask)",
    "speed": "explain / training-step time and FLOP efficiency of Deep and Vision ShapNets (1 thread)",
    "fidelity": "error and time of ShapNet vs shap/Captum against exact Shapley values (yeast, wine, diabetes)",
    "faithfulness": "Captum infidelity/sensitivity and Quantus faithfulness metrics for ShapNet and the ROAR methods",
    "accuracy": "test accuracy / R² of ShapNets vs a plain MLP, LogisticRegression and gradient boosting",
    "sparsity": "L1 on every layer's Shapley values, then threshold pruning: score against explanation speed-up",
    "image_reference": "VisionShapNet reference 'mean' vs 'min': accuracy, ROAD, |phi| on the background",
    "distributed": "DDP training (torchrun, N processes) against one process: steps per second",
    "explain_scale": "python -m shapnet.explain on a generated 64-feature Parquet file: rows/s with 1 and 2 Dask "
    "workers, worker memory",
    "scaling": "time to explain a batch as the number of features grows: ShapNet vs Kernel SHAP and sampling",
    "rivals": "Deep ShapNet vs HarsanyiNet vs FastSHAP: score, exactness, cost, FastSHAP break-even, ROAR/KAR",
}
