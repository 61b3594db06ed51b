"""The benchmarks: name -> (module in this package exposing ``main(argv)``, one-line summary)."""

from __future__ import annotations

BENCHMARKS: dict[str, tuple[str, str]] = {
    "quickstart": ("quickstart", "train a Deep ShapNet on breast_cancer, show accuracy and one explanation"),
    "speed": ("speed", "explain / training-step time and FLOP efficiency of Deep and Vision ShapNets (1 thread)"),
}
