"""Small data files the benchmark CLIs are run on (each test writes its own into tmp_path)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest


def mixed_table(n: int = 160, seed: int = 0) -> pd.DataFrame:
    """Numeric and categorical columns, a string class target ``label`` and a numeric target ``price``."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    colour = rng.choice(["red", "green", "blue"], size=n)
    bonus = np.where(colour == "red", 1.0, 0.0)
    signal = x[:, 0] + 0.5 * x[:, 1] + bonus
    return pd.DataFrame(
        {
            "size": x[:, 0],
            "weight": x[:, 1],
            "noise": x[:, 2],
            "colour": colour,
            "price": signal + 0.1 * rng.normal(size=n),
            "label": np.where(signal > 0.3, "yes", "no"),
        }
    )


@pytest.fixture
def mixed_csv(tmp_path: Path) -> Path:
    """``shop.csv``: the label (a string, two classes) is the last column; ``price`` is a second target."""
    path = tmp_path / "shop.csv"
    mixed_table().to_csv(path, index=False)
    return path


@pytest.fixture
def regression_csv(tmp_path: Path) -> Path:
    """``prices.csv``: the same features with ``price`` (a float) as the last column."""
    path = tmp_path / "prices.csv"
    mixed_table().drop(columns="label").to_csv(path, index=False)
    return path
