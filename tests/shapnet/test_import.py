"""What ``import shapnet`` costs: the core loads torch, numpy and numba, not the libraries it adapts to."""

from __future__ import annotations

import subprocess
import sys


def test_import_leaves_the_optional_libraries_unloaded() -> None:
    """scikit-learn (about a second of start-up, paid by every Dask worker and DDP rank), pandas, Captum,
    shap, Quantus and Dask load only when a feature that needs them is used."""
    heavy = ["sklearn", "pandas", "captum", "shap", "quantus", "dask"]
    code = f"import sys, shapnet; print([m for m in {heavy!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
