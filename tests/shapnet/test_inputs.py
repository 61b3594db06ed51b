"""InputSpec: the raw-column transform a checkpoint records, applied to new tables."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import shapnet
from shapnet import DeepShapNet, InputSpec
from shapnet.datasets import load_dataset


def test_numeric_and_one_hot_columns_are_transformed_as_in_training() -> None:
    spec = InputSpec(["age", "sex=F", "sex=M"], mean=[40.0, 0.0, 0.0], scale=[10.0, 1.0, 1.0])
    frame = pd.DataFrame({"sex": ["F", "M", "X", None], "age": [30, 50, np.nan, 60], "other": 1})
    np.testing.assert_array_equal(  # unseen/missing category: no indicator; missing number: the mean
        spec.transform(frame), [[-1.0, 1.0, 0.0], [1.0, 0.0, 1.0], [0.0, 0.0, 0.0], [2.0, 0.0, 0.0]]
    )
    assert spec.columns(frame.columns) == ["age", "sex"]


def test_a_dataset_spec_reproduces_its_standardised_features() -> None:
    ds = load_dataset("wine", random_state=0)
    spec = InputSpec.from_dataset(ds)
    raw = pd.DataFrame(ds.X_test * ds.scale + ds.mean, columns=ds.feature_names)
    np.testing.assert_allclose(spec.transform(raw), ds.X_test, atol=1e-5)
    assert spec.output_names == tuple(ds.class_names)


def test_a_table_loaded_from_a_file_is_transformed_like_its_training_rows(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"x": rng.normal(3, 2, 80), "colour": rng.choice(["red", "blue"], 80),
                          "n": rng.integers(0, 5, 80), "y": rng.integers(0, 2, 80)})
    frame.loc[5, "x"] = np.nan
    frame.to_csv(tmp_path / "t.csv", index=False)
    ds = load_dataset(tmp_path / "t.csv", label_column="y", random_state=0)
    spec = InputSpec.from_dataset(ds)
    X = spec.transform(pd.read_csv(tmp_path / "t.csv"))
    # Every training row appears among the transformed file rows (float32 rounding of the dataset).
    distances = np.abs(ds.X_train[:, None, :] - X[None, :, :]).max(-1).min(1)
    assert distances.max() < 1e-5


def test_saved_with_the_model_and_loaded_without_unpickling(tmp_path: Path) -> None:
    model = DeepShapNet(3, 2)
    spec = InputSpec(["a", "b", "c=x"], mean=[1.0, 2.0, 0.0], scale=2.0, output_names=["n", "y"])
    shapnet.save(model, tmp_path / "m.pt", inputs=spec)
    torch.load(tmp_path / "m.pt", weights_only=True)  # plain data only
    back = InputSpec.from_checkpoint(tmp_path / "m.pt")
    assert back.to_dict() == spec.to_dict()
    shapnet.save(model, tmp_path / "bare.pt")
    assert InputSpec.from_checkpoint(tmp_path / "bare.pt") is None


def test_bad_specs_and_columns_are_named() -> None:
    with pytest.raises(ValueError, match="takes 3 input features but the input spec has 2"):
        shapnet.save(DeepShapNet(3, 2), "unused.pt", inputs=InputSpec(["a", "b"]))
    with pytest.raises(ValueError, match="has 2 outputs but the input spec names 3"):
        InputSpec(["a", "b", "c"], output_names=["x", "y", "z"]).check_model(DeepShapNet(3, 2))
    with pytest.raises(ValueError, match="unique"):
        InputSpec(["a", "a"])
    with pytest.raises(ValueError, match="1 or 2 values"):
        InputSpec(["a", "b"], mean=[0.0, 1.0, 2.0])
    with pytest.raises(ValueError, match="non-zero"):
        InputSpec(["a"], scale=0.0)
    with pytest.raises(ValueError, match="no column for 1 of the model's 2 features: 'b=z'"):
        InputSpec(["a", "b=z"]).transform(pd.DataFrame({"a": [1.0]}))
    with pytest.raises(ValueError, match="column 'a' must be numeric"):
        InputSpec(["a"]).transform(pd.DataFrame({"a": ["one"]}))
