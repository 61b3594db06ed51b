"""Tests for shapnet.datasets.

Synthetic IDX / yeast / adult files are written to ``tmp_path``; tests on the
real files look for the data root at ``$SHAPNET_DATA`` or ``../shared/data``
(relative to the project root) and skip when it is absent.
"""

from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shapnet.datasets import (
    DATASETS,
    ENV_VAR,
    MAX_AUTO_CLASSES,
    Dataset,
    from_arrays,
    from_frame,
    list_datasets,
    load_dataset,
    read_idx,
)

# --------------------------------------------------------------------------- #
# Helpers to write tiny synthetic data files
# --------------------------------------------------------------------------- #
_IDX_CODES = {np.dtype(np.uint8): 0x08, np.dtype(np.int8): 0x09, np.dtype(">i2"): 0x0B,
              np.dtype(">i4"): 0x0C, np.dtype(">f4"): 0x0D, np.dtype(">f8"): 0x0E}


def idx_bytes(arr: np.ndarray) -> bytes:
    """Serialise ``arr`` in IDX format (big-endian)."""
    dt = arr.dtype if arr.dtype.itemsize == 1 else arr.dtype.newbyteorder(">")
    code = _IDX_CODES[dt]
    header = struct.pack(">HBB", 0, code, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return header + np.ascontiguousarray(arr, dtype=dt).tobytes()


def write_gz(path: Path, payload: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wb") as fh:
        fh.write(payload)
    return path


def make_mnist(folder: Path, n_train: int = 20, n_test: int = 10, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte.gz": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte.gz": (np.arange(n_train) % 10).astype(np.uint8),
        "t10k-images-idx3-ubyte.gz": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte.gz": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    for fn, arr in arrays.items():
        write_gz(folder / fn, idx_bytes(arr))
    return arrays


YEAST_CLASSES = ["NUC", "CYT", "MIT", "ME3"]  # deliberately unsorted


def make_yeast(folder: Path, per_class: int = 10, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    lines = []
    for k, cls in enumerate(YEAST_CLASSES * per_class):
        vals = rng.uniform(0, 1, 8)
        vals[5] = 0.0  # constant column (like 'pox', mostly 0) -> std guard
        lines.append(f"SEQ{k}_YEAST  " + "  ".join(f"{v:.2f}" for v in vals) + f"  {cls}")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "yeast.data"
    path.write_text("\n".join(lines) + "\n")
    return path


ADULT_TRAIN = """\
39, State-gov, 77516, Bachelors, 13, Never-married, Adm-clerical, Not-in-family, White, Male, 2174, 0, 40, United-States, <=50K
50, Self-emp-not-inc, 83311, Bachelors, 13, Married-civ-spouse, Exec-managerial, Husband, White, Male, 0, 0, 13, United-States, <=50K
38, Private, 215646, HS-grad, 9, Divorced, Handlers-cleaners, Not-in-family, White, Male, 0, 0, 40, United-States, <=50K
53, Private, 234721, 11th, 7, Married-civ-spouse, Handlers-cleaners, Husband, Black, Male, 0, 0, 40, United-States, <=50K
28, Private, 338409, Bachelors, 13, Married-civ-spouse, Prof-specialty, Wife, Black, Female, 0, 0, 40, Cuba, <=50K
37, Private, 284582, Masters, 14, Married-civ-spouse, Exec-managerial, Wife, White, Female, 0, 0, 40, United-States, <=50K
52, Self-emp-not-inc, 209642, HS-grad, 9, Married-civ-spouse, Exec-managerial, Husband, White, Male, 0, 0, 45, United-States, >50K
31, Private, 45781, Masters, 14, Never-married, Prof-specialty, Not-in-family, White, Female, 14084, 0, 50, United-States, >50K
54, ?, 180211, Some-college, 10, Married-civ-spouse, ?, Husband, Asian-Pac-Islander, Male, 0, 0, 60, South, >50K
42, Private, 159449, Bachelors, 13, Married-civ-spouse, Exec-managerial, Husband, White, Male, 5178, 0, 40, ?, >50K

"""

ADULT_TEST = """\
|1x3 Cross validator
25, Private, 226802, 11th, 7, Never-married, Machine-op-inspct, Own-child, Black, Male, 0, 0, 40, United-States, <=50K.
38, Private, 89814, HS-grad, 9, Married-civ-spouse, Farming-fishing, Husband, White, Male, 0, 0, 50, United-States, <=50K.
18, ?, 103497, Some-college, 10, Never-married, ?, Own-child, White, Female, 0, 0, 30, United-States, <=50K.
35, Self-emp-inc, 182148, Bachelors, 13, Married-civ-spouse, Exec-managerial, Husband, White, Male, 0, 0, 60, United-States, >50K.

"""


def make_adult(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "adult.data").write_text(ADULT_TRAIN)
    (folder / "adult.test").write_text(ADULT_TEST)


@pytest.fixture
def data_root(tmp_path: Path) -> Path:
    """A data root with tiny mnist/, yeast/ and adult/ folders."""
    make_mnist(tmp_path / "mnist")
    make_yeast(tmp_path / "yeast")
    make_adult(tmp_path / "adult")
    return tmp_path


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests start without SHAPNET_DATA so a user's setting cannot leak in."""
    monkeypatch.delenv(ENV_VAR, raising=False)


def assert_common(ds: Dataset) -> None:
    assert ds.X_train.dtype == np.float32 and ds.X_test.dtype == np.float32
    assert ds.y_train.shape == (len(ds.X_train),) and ds.y_test.shape == (len(ds.X_test),)
    assert len(ds.feature_names) == ds.n_features == int(np.prod(ds.X_train.shape[1:]))
    assert ds.X_test.shape[1:] == ds.X_train.shape[1:]
    assert np.isfinite(ds.X_train).all() and np.isfinite(ds.X_test).all()
    if ds.task == "classification":
        assert ds.y_train.dtype == np.int64 and ds.y_test.dtype == np.int64
        assert ds.class_names is not None and ds.n_classes == len(ds.class_names)
        assert ds.y_train.min() >= 0 and ds.y_train.max() < ds.n_classes
        assert ds.y_test.min() >= 0 and ds.y_test.max() < ds.n_classes
    else:
        assert ds.y_train.dtype == np.float32 and ds.class_names is None and ds.n_classes == 1
    assert ds.mean.shape == ds.scale.shape and (ds.scale > 0).all()
    if ds.image_shape is None:
        assert ds.X_train.ndim == 2 and ds.mean.shape == (ds.n_features,)
    else:
        assert ds.X_train.shape[1:] == ds.image_shape and ds.mean.shape == (ds.image_shape[0],)


def assert_standardised(X: np.ndarray, atol: float = 1e-4) -> None:
    """Per-column train mean 0 and std 1 (std 0 allowed for constant columns)."""
    X = X.reshape(len(X), -1).astype(np.float64)
    np.testing.assert_allclose(X.mean(0), 0.0, atol=atol)
    std = X.std(0)
    assert np.all((np.abs(std - 1) < atol) | (std < atol)), std


# --------------------------------------------------------------------------- #
# Registry
# --------------------------------------------------------------------------- #
def test_list_datasets() -> None:
    names = list_datasets()
    assert names == sorted(names) == sorted(DATASETS)
    assert set(names) == {"breast_cancer", "wine", "digits", "diabetes", "yeast", "adult", "mnist"}


def test_unknown_name_lists_valid_names() -> None:
    with pytest.raises(ValueError, match="Unknown dataset 'nope'") as exc:
        load_dataset("nope")
    for name in list_datasets():
        assert name in str(exc.value)


def test_name_is_case_insensitive() -> None:
    assert load_dataset("  Wine ").name == "wine"


# --------------------------------------------------------------------------- #
# scikit-learn bundled sets
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize(
    ("name", "n", "d", "classes"),
    [("breast_cancer", 569, 30, ["malignant", "benign"]),
     ("wine", 178, 13, ["class_0", "class_1", "class_2"])],
)
def test_sklearn_tabular(name: str, n: int, d: int, classes: list[str]) -> None:
    ds = load_dataset(name, test_size=0.25, random_state=0)
    assert_common(ds)
    assert ds.name == name and ds.task == "classification" and ds.image_shape is None
    assert len(ds.X_train) + len(ds.X_test) == n and ds.X_train.shape[1] == d
    assert ds.class_names == classes
    assert_standardised(ds.X_train)
    # Stratified: class proportions agree between train and test.
    p_tr = np.bincount(ds.y_train, minlength=ds.n_classes) / len(ds.y_train)
    p_te = np.bincount(ds.y_test, minlength=ds.n_classes) / len(ds.y_test)
    np.testing.assert_allclose(p_tr, p_te, atol=0.02)


def test_split_is_deterministic() -> None:
    a = load_dataset("wine", random_state=3)
    b = load_dataset("wine", random_state=3)
    c = load_dataset("wine", random_state=4)
    np.testing.assert_array_equal(a.X_train, b.X_train)
    np.testing.assert_array_equal(a.y_test, b.y_test)
    assert not np.array_equal(a.X_train, c.X_train)


def test_test_size() -> None:
    ds = load_dataset("breast_cancer", test_size=0.5)
    assert abs(len(ds.X_test) - 569 / 2) <= 1


def test_diabetes_regression_keeps_y_units() -> None:
    from sklearn.datasets import load_diabetes

    ds = load_dataset("diabetes")
    assert_common(ds)
    assert ds.task == "regression" and ds.class_names is None and ds.n_classes == 1
    assert ds.X_train.shape == (331, 10) and ds.X_test.shape == (111, 10)
    assert ds.feature_names[:3] == ["age", "sex", "bmi"]
    assert_standardised(ds.X_train)
    # y in original units (25..346), not standardised.
    y = np.concatenate([ds.y_train, ds.y_test])
    assert y.mean() > 100
    np.testing.assert_allclose(np.sort(y), np.sort(load_diabetes().target).astype(np.float32))
    # raw features (age in years) are recovered as X * scale + mean
    raw = ds.X_train * ds.scale + ds.mean
    assert 15 < raw[:, 0].min() and raw[:, 0].max() < 90


def test_digits_are_images() -> None:
    ds = load_dataset("digits")
    assert_common(ds)
    assert ds.image_shape == (1, 8, 8) and ds.X_train.shape[1:] == (1, 8, 8)
    assert len(ds.X_train) + len(ds.X_test) == 1797
    assert ds.class_names == [str(i) for i in range(10)]
    assert ds.feature_names[0] == "pixel_0_0" and ds.feature_names[-1] == "pixel_7_7"
    assert ds.mean.shape == (1,) and ds.scale.shape == (1,)
    # Global (not per-pixel) standardisation, stats in [0, 1] pixel units.
    assert abs(float(ds.X_train.mean())) < 1e-4 and abs(float(ds.X_train.std()) - 1) < 1e-4
    assert 0 < ds.mean[0] < 1
    raw = ds.X_train * ds.scale[0] + ds.mean[0]
    assert raw.min() > -1e-5 and raw.max() < 1 + 1e-5


def test_max_train_subsamples_deterministically() -> None:
    full = load_dataset("breast_cancer", random_state=1)
    a = load_dataset("breast_cancer", random_state=1, max_train=50)
    b = load_dataset("breast_cancer", random_state=1, max_train=50)
    assert a.X_train.shape == (50, 30)
    np.testing.assert_array_equal(a.y_train, b.y_train)
    np.testing.assert_array_equal(a.X_train, b.X_train)
    assert len(a.X_test) == len(full.X_test)  # test set untouched
    assert_standardised(a.X_train)  # statistics refitted on the subsample
    big = load_dataset("breast_cancer", random_state=1, max_train=10_000)
    np.testing.assert_array_equal(big.X_train, full.X_train)


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_max_train_validation(bad: object) -> None:
    with pytest.raises(ValueError, match="max_train"):
        load_dataset("wine", max_train=bad)  # type: ignore[arg-type]


def test_dataset_is_frozen_and_repr_is_short() -> None:
    ds = load_dataset("wine")
    with pytest.raises(AttributeError):
        ds.name = "x"  # type: ignore[misc]
    assert "X_train=(133, 13)" in repr(ds) and len(repr(ds)) < 300
    assert ds == ds and ds != load_dataset("wine")  # identity equality, hashable
    hash(ds)


# --------------------------------------------------------------------------- #
# IDX reader
# --------------------------------------------------------------------------- #
@settings(max_examples=40, deadline=None)
@given(
    dtype=st.sampled_from([np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64]),
    shape=st.lists(st.integers(0, 5), min_size=1, max_size=4),
    compress=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_read_idx_roundtrip(dtype: type, shape: list[int], compress: bool, seed: int,
                            tmp_path_factory: pytest.TempPathFactory) -> None:
    rng = np.random.default_rng(seed)
    arr = (rng.standard_normal(shape) * 100).astype(dtype)
    path = tmp_path_factory.mktemp("idx") / "a.idx"
    payload = idx_bytes(arr)
    if compress:
        write_gz(path, payload)
    else:
        path.write_bytes(payload)
    out = read_idx(path)
    assert out.shape == arr.shape and out.dtype == np.dtype(dtype)
    assert out.dtype.isnative
    np.testing.assert_array_equal(out, arr)


def test_read_idx_expected_magic(tmp_path: Path) -> None:
    path = write_gz(tmp_path / "labels.gz", idx_bytes(np.arange(5, dtype=np.uint8)))
    assert read_idx(path, expected_magic=2049).tolist() == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="labels.gz.*magic number 2049, expected 2051"):
        read_idx(path, expected_magic=2051)


@pytest.mark.parametrize(
    "kind", ["truncated_data", "extra_data", "bad_magic", "empty", "truncated_gzip", "short_header"]
)
def test_read_idx_corrupt(tmp_path: Path, kind: str) -> None:
    good = idx_bytes(np.zeros((3, 28, 28), dtype=np.uint8))
    path = tmp_path / "train-images-idx3-ubyte.gz"
    if kind == "truncated_data":
        write_gz(path, good[:-7])
    elif kind == "extra_data":
        write_gz(path, good + b"\x00")
    elif kind == "bad_magic":
        write_gz(path, b"\x01\x02" + good[2:])
    elif kind == "empty":
        write_gz(path, b"")
    elif kind == "short_header":
        write_gz(path, good[:9])
    else:
        full = gzip.compress(good)
        path.write_bytes(full[: len(full) // 2])
    with pytest.raises(ValueError, match="train-images-idx3-ubyte.gz"):
        read_idx(path)


def test_read_idx_missing(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_idx(tmp_path / "nope.gz")


# --------------------------------------------------------------------------- #
# MNIST (synthetic)
# --------------------------------------------------------------------------- #
def test_mnist_synthetic(data_root: Path) -> None:
    arrays = make_mnist(data_root / "mnist", n_train=20, n_test=10, seed=5)
    ds = load_dataset("mnist", data_root)
    assert_common(ds)
    assert ds.X_train.shape == (20, 1, 28, 28) and ds.X_test.shape == (10, 1, 28, 28)
    assert ds.image_shape == (1, 28, 28) and ds.n_features == 784
    assert ds.class_names == [str(i) for i in range(10)] and ds.n_classes == 10
    assert ds.feature_names[0] == "pixel_0_0" and ds.feature_names[29] == "pixel_1_1"
    assert ds.feature_names[-1] == "pixel_27_27"
    np.testing.assert_array_equal(ds.y_train, arrays["train-labels-idx1-ubyte.gz"])
    np.testing.assert_array_equal(ds.y_test, arrays["t10k-labels-idx1-ubyte.gz"])
    # [0,1] scaling then one global train mean/std.
    raw_tr = arrays["train-images-idx3-ubyte.gz"] / 255.0
    np.testing.assert_allclose(ds.mean, [raw_tr.mean()], rtol=1e-5)
    np.testing.assert_allclose(ds.scale, [raw_tr.std()], rtol=1e-5)
    assert abs(float(ds.X_train.mean())) < 1e-4 and abs(float(ds.X_train.std()) - 1) < 1e-4
    np.testing.assert_allclose(
        ds.X_test[:, 0] * ds.scale[0] + ds.mean[0], arrays["t10k-images-idx3-ubyte.gz"] / 255.0, atol=1e-5
    )


def test_mnist_ignores_test_size_and_subsamples(data_root: Path) -> None:
    ds = load_dataset("mnist", data_root, test_size=0.9, max_train=7)
    assert ds.X_train.shape == (7, 1, 28, 28) and ds.X_test.shape == (10, 1, 28, 28)


def test_mnist_accepts_dataset_folder_directly(data_root: Path) -> None:
    a = load_dataset("mnist", data_root)
    b = load_dataset("mnist", data_root / "mnist")
    c = load_dataset("mnist", str(data_root / "mnist"))
    np.testing.assert_array_equal(a.X_train, b.X_train)
    np.testing.assert_array_equal(a.X_train, c.X_train)


def test_mnist_accepts_uncompressed(tmp_path: Path) -> None:
    arrays = make_mnist(tmp_path / "gz")
    raw = tmp_path / "raw"
    raw.mkdir()
    for fn, arr in arrays.items():
        (raw / fn.removesuffix(".gz")).write_bytes(idx_bytes(arr))
    ds = load_dataset("mnist", raw)
    np.testing.assert_array_equal(ds.y_train, arrays["train-labels-idx1-ubyte.gz"])


def test_env_var(data_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_VAR, str(data_root))
    assert load_dataset("mnist").X_train.shape == (20, 1, 28, 28)
    assert load_dataset("yeast").n_features == 8
    monkeypatch.setenv(ENV_VAR, str(data_root / "adult"))
    assert load_dataset("adult").class_names == ["<=50K", ">50K"]


def test_data_dir_beats_env_var(data_root: Path, tmp_path_factory: pytest.TempPathFactory,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_VAR, str(tmp_path_factory.mktemp("empty")))
    assert load_dataset("yeast", data_root).name == "yeast"


@pytest.mark.parametrize("name", ["mnist", "yeast", "adult"])
def test_no_data_dir(name: str) -> None:
    with pytest.raises(ValueError, match=f"data_dir.*{ENV_VAR}"):
        load_dataset(name)


def test_mnist_missing_file(data_root: Path) -> None:
    (data_root / "mnist" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(FileNotFoundError) as exc:
        load_dataset("mnist", data_root)
    msg = str(exc.value)
    assert "t10k-labels-idx1-ubyte.gz" in msg
    assert str(data_root / "mnist") in msg
    assert "lecun.com" in msg


@pytest.mark.parametrize(
    ("name", "filename", "source"),
    [("yeast", "yeast.data", "archive.ics.uci.edu"),
     ("adult", "adult.data", "archive.ics.uci.edu"),
     ("mnist", "train-images-idx3-ubyte.gz", "lecun.com")],
)
def test_missing_directory(tmp_path: Path, name: str, filename: str, source: str) -> None:
    with pytest.raises(FileNotFoundError) as exc:
        load_dataset(name, tmp_path / "does-not-exist")
    msg = str(exc.value)
    assert filename in msg and "does-not-exist" in msg and source in msg


def test_adult_missing_test_file(data_root: Path) -> None:
    (data_root / "adult" / "adult.test").unlink()
    with pytest.raises(FileNotFoundError, match=r"adult\.test"):
        load_dataset("adult", data_root)


def test_mnist_corrupt_file(data_root: Path) -> None:
    path = data_root / "mnist" / "train-labels-idx1-ubyte.gz"
    write_gz(path, idx_bytes(np.zeros(19, dtype=np.uint8)))  # 19 labels for 20 images
    with pytest.raises(ValueError, match="train-labels-idx1-ubyte.gz"):
        load_dataset("mnist", data_root)
    # images and labels swapped -> wrong magic number
    imgs = (data_root / "mnist" / "train-images-idx3-ubyte.gz").read_bytes()
    path.write_bytes(imgs)
    with pytest.raises(ValueError, match="train-labels-idx1-ubyte.gz.*magic number 2051, expected 2049"):
        load_dataset("mnist", data_root)


def test_mnist_truncated_file(data_root: Path) -> None:
    path = data_root / "mnist" / "t10k-images-idx3-ubyte.gz"
    payload = gzip.decompress(path.read_bytes())
    write_gz(path, payload[: len(payload) - 100])
    with pytest.raises(ValueError, match="t10k-images-idx3-ubyte.gz"):
        load_dataset("mnist", data_root)


# --------------------------------------------------------------------------- #
# Yeast (synthetic)
# --------------------------------------------------------------------------- #
def test_yeast_synthetic(data_root: Path) -> None:
    ds = load_dataset("yeast", data_root, test_size=0.25, random_state=0)
    assert_common(ds)
    assert ds.X_train.shape == (30, 8) and ds.X_test.shape == (10, 8)
    assert ds.class_names == sorted(YEAST_CLASSES)
    assert ds.feature_names == ["mcg", "gvh", "alm", "mit", "erl", "pox", "vac", "nuc"]
    assert_standardised(ds.X_train)
    assert ds.scale[5] == 1.0 and np.all(ds.X_train[:, 5] == 0)  # constant column guarded
    # stratified: every class in the test set (10 per class, 25%)
    assert sorted(np.bincount(ds.y_test).tolist()) == [2, 2, 3, 3]


def test_yeast_labels_match_file(data_root: Path) -> None:
    ds = load_dataset("yeast", data_root / "yeast", test_size=0.5, random_state=2)
    lines = (data_root / "yeast" / "yeast.data").read_text().split("\n")
    # compare in integer hundredths (the file has two decimals)
    rows = {tuple(round(float(v) * 100) for v in ln.split()[1:9]): ln.split()[-1]
            for ln in lines if ln}
    raw = np.rint((ds.X_train.astype(np.float64) * ds.scale + ds.mean) * 100).astype(int)
    for x, y in zip(raw, ds.y_train):
        assert rows[tuple(x.tolist())] == ds.class_names[y]


def test_yeast_malformed_line(tmp_path: Path) -> None:
    path = make_yeast(tmp_path)
    path.write_text(path.read_text() + "BAD_YEAST 0.1 0.2 CYT\n")
    with pytest.raises(ValueError, match=r"yeast\.data:41"):
        load_dataset("yeast", tmp_path)


# --------------------------------------------------------------------------- #
# Adult (synthetic)
# --------------------------------------------------------------------------- #
def test_adult_synthetic(data_root: Path) -> None:
    ds = load_dataset("adult", data_root, test_size=0.9)  # test_size ignored
    assert_common(ds)
    # 2 train rows and 1 test row contain '?' and are dropped; comment/blank lines skipped.
    assert len(ds.X_train) == 8 and len(ds.X_test) == 3
    assert ds.class_names == ["<=50K", ">50K"]
    assert ds.y_train.tolist() == [0, 0, 0, 0, 0, 0, 1, 1]
    assert ds.y_test.tolist() == [0, 0, 1]  # trailing '.' stripped
    names = ds.feature_names
    assert names[:6] == ["age", "fnlwgt", "education-num", "capital-gain", "capital-loss", "hours-per-week"]
    assert "workclass=Private" in names and "native-country=Cuba" in names
    assert "sex=Female" in names and "sex=Male" in names
    assert not any("?" in n for n in names)
    assert "native-country=South" not in names  # only on a dropped row
    # numeric block standardised, one-hot block left as 0/1 with mean 0 / scale 1
    assert_standardised(ds.X_train[:, :6])
    oh_tr, oh_te = ds.X_train[:, 6:], ds.X_test[:, 6:]
    assert set(np.unique(oh_tr)) <= {0.0, 1.0} and set(np.unique(oh_te)) <= {0.0, 1.0}
    np.testing.assert_array_equal(oh_tr.sum(1), 8)  # one hot per categorical column
    assert np.all(ds.mean[6:] == 0) and np.all(ds.scale[6:] == 1)
    # Feature names line up with values.
    row0 = dict(zip(names, ds.X_train[0] * ds.scale + ds.mean))
    assert row0["workclass=State-gov"] == 1 and row0["workclass=Private"] == 0
    assert row0["age"] == pytest.approx(39, abs=1e-3)
    assert row0["fnlwgt"] == pytest.approx(77516, rel=1e-6)


def test_adult_unknown_test_category_is_all_zero(data_root: Path) -> None:
    # Test rows hold 'Farming-fishing' and 'Machine-op-inspct' occupations, unseen in train.
    ds = load_dataset("adult", data_root)
    occ = [i for i, n in enumerate(ds.feature_names) if n.startswith("occupation=")]
    assert "occupation=Farming-fishing" not in ds.feature_names
    assert ds.X_test[:2][:, occ].sum() == 0
    assert ds.X_test[2, occ].sum() == 1


def test_adult_max_train(data_root: Path) -> None:
    ds = load_dataset("adult", data_root, max_train=5, random_state=0)
    assert len(ds.X_train) == 5 and len(ds.X_test) == 3
    assert ds.X_test.shape[1] == ds.n_features


def test_adult_bad_label(tmp_path: Path) -> None:
    make_adult(tmp_path)
    (tmp_path / "adult.test").write_text(ADULT_TEST.replace(">50K.", "maybe"))
    with pytest.raises(ValueError, match=r"adult\.test:5.*maybe"):
        load_dataset("adult", tmp_path)


# --------------------------------------------------------------------------- #
# Real files (skipped when ../shared/data is absent)
# --------------------------------------------------------------------------- #
def _real_root() -> Path | None:
    env = os.environ.get(ENV_VAR)  # read at import time, before the autouse fixture
    candidates = [Path(env)] if env else []
    candidates.append(Path(__file__).resolve().parents[3] / "shared" / "data")
    return next((c for c in candidates if c.is_dir()), None)


REAL_ROOT = _real_root()


def real_folder(name: str) -> Path:
    if REAL_ROOT is None:
        pytest.skip(f"real data not found (set {ENV_VAR} or provide ../shared/data)")
    folder = REAL_ROOT / name if (REAL_ROOT / name).is_dir() else REAL_ROOT
    if not any(folder.iterdir()):
        pytest.skip(f"no real {name} files in {folder}")
    return folder


def test_real_mnist() -> None:
    folder = real_folder("mnist")
    if not (folder / "train-images-idx3-ubyte.gz").exists():
        pytest.skip("real MNIST files absent")
    ds = load_dataset("mnist", folder)
    assert ds.X_train.shape == (60000, 1, 28, 28) and ds.X_test.shape == (10000, 1, 28, 28)
    assert ds.y_train[:5].tolist() == [5, 0, 4, 1, 9] and ds.y_test[:5].tolist() == [7, 2, 1, 0, 4]
    np.testing.assert_allclose(ds.mean, [0.1307], atol=1e-4)
    np.testing.assert_allclose(ds.scale, [0.3081], atol=1e-4)


def test_real_yeast() -> None:
    folder = real_folder("yeast")
    if not (folder / "yeast.data").exists():
        pytest.skip("real yeast.data absent")
    ds = load_dataset("yeast", folder)
    assert_common(ds)
    assert len(ds.X_train) + len(ds.X_test) == 1484 and ds.n_features == 8
    assert ds.class_names == ["CYT", "ERL", "EXC", "ME1", "ME2", "ME3", "MIT", "NUC", "POX", "VAC"]
    counts = np.bincount(np.concatenate([ds.y_train, ds.y_test]))
    assert counts.tolist() == [463, 5, 35, 44, 51, 163, 244, 429, 20, 30]
    assert_standardised(ds.X_train)


def test_real_adult() -> None:
    folder = real_folder("adult")
    if not (folder / "adult.data").exists():
        pytest.skip("real adult files absent")
    ds = load_dataset("adult", folder)
    assert_common(ds)
    assert ds.X_train.shape == (30162, 104) and ds.X_test.shape == (15060, 104)
    assert np.bincount(ds.y_train).tolist() == [22654, 7508]
    assert np.bincount(ds.y_test).tolist() == [11360, 3700]
    assert "workclass=Private" in ds.feature_names
    assert_standardised(ds.X_train[:, :6])


# --------------------------------------------------------------------------- #
# Your own data: from_arrays, from_frame, and paths (.csv, .parquet, .npz, IDX folder)
# --------------------------------------------------------------------------- #
def people_frame(n: int = 80, seed: int = 0):
    """Numeric + categorical columns (with a missing cell) and a string target."""
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({
        "age": rng.integers(18, 80, n).astype(float),
        "city": rng.choice(["Paris", "Oslo", "Lima"], n),
        "income": rng.normal(50.0, 10.0, n),
        "smoker": rng.choice(["yes", "no"], n),
        "outcome": rng.choice(["sick", "healthy", "unknown"], n),
    })
    df.loc[5, "city"] = None
    df.loc[7, "age"] = np.nan
    return df


def test_from_frame_numeric_categorical_string_target() -> None:
    df = people_frame()
    ds = from_frame(df, "outcome", name="people", test_size=0.25, random_state=0)
    assert_common(ds)
    assert ds.name == "people" and ds.task == "classification"
    assert ds.class_names == ["healthy", "sick", "unknown"]
    assert ds.feature_names == ["age", "income", "city=Lima", "city=Oslo", "city=Paris",
                                "smoker=no", "smoker=yes"]
    assert len(ds.X_train) == 60 and len(ds.X_test) == 20
    # Numeric block standardised with train statistics; one-hot left as 0/1.
    assert_standardised(ds.X_train[:, :2])
    assert set(np.unique(ds.X_train[:, 2:])) <= {0.0, 1.0}
    assert np.all(ds.mean[2:] == 0) and np.all(ds.scale[2:] == 1)
    # Labels line up with the frame: recover each training row and find it in df.
    raw = ds.X_train.astype(np.float64) * ds.scale + ds.mean
    for x, y in zip(raw[:10], ds.y_train[:10]):
        match = df[np.isclose(df["income"], x[1])]
        assert len(match) == 1
        assert match["outcome"].iloc[0] == ds.class_names[y]
        city = match["city"].iloc[0]
        expected_city = [float(city == c) for c in ("Lima", "Oslo", "Paris")]
        assert x[2:5].tolist() == expected_city  # a missing city is an all-zero block


def test_from_frame_fits_on_train_only() -> None:
    df = people_frame()
    ds = from_frame(df, "outcome", random_state=3)
    a = from_frame(df, "outcome", random_state=3)
    np.testing.assert_array_equal(ds.X_test, a.X_test)
    # The income mean is the training mean, not the full-table mean.
    raw_train_income = ds.X_train[:, 1].astype(np.float64) * ds.scale[1] + ds.mean[1]
    assert ds.mean[1] == pytest.approx(raw_train_income.mean(), rel=1e-5)
    assert ds.mean[1] != pytest.approx(df["income"].mean(), rel=1e-6)
    assert abs(float(ds.X_test[:, 1].mean())) > 1e-4  # test split not re-centred
    # Missing age imputed with the train mean -> exactly 0 after standardising.
    assert np.isfinite(ds.X_train).all() and np.isfinite(ds.X_test).all()


def test_from_frame_unseen_test_category_is_all_zero() -> None:
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame({"c": ["a", "b"] * 10 + ["z"], "y": [0.5 * i for i in range(21)]})
    ds = from_frame(df, "y", test_size=0.2, random_state=0)
    assert ds.task == "regression" and ds.class_names is None
    if "c=z" in ds.feature_names:  # 'z' landed in train
        pytest.skip("the single 'z' row was drawn into the training split")
    assert ds.feature_names == ["c=a", "c=b"]
    raw_y = [0.5 * i for i in range(21)]
    z_pos = [i for i, v in enumerate(ds.y_test.tolist()) if v == pytest.approx(raw_y[20])]
    assert len(z_pos) == 1 and ds.X_test[z_pos[0]].sum() == 0


def test_from_frame_errors() -> None:
    df = people_frame()
    with pytest.raises(ValueError, match="no target column 'nope'.*outcome"):
        from_frame(df, "nope")
    with pytest.raises(TypeError, match="DataFrame"):
        from_frame(df.to_numpy(), "outcome")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="regression needs a numeric target"):
        from_frame(df, "outcome", task="regression")
    with pytest.raises(ValueError, match="task must be"):
        from_frame(df, "outcome", task="clustering")
    with pytest.raises(ValueError, match=r"\['maybe'\] are not in class_names"):
        from_frame(df.assign(outcome="maybe"), "outcome", class_names=["sick", "healthy"])


def test_from_frame_class_names_fix_the_order() -> None:
    df = people_frame()
    ds = from_frame(df, "outcome", class_names=["unknown", "sick", "healthy"])
    assert ds.class_names == ["unknown", "sick", "healthy"]
    # Each row's index names its own outcome (rows found again by their income).
    raw_income = ds.X_train[:, 1].astype(np.float64) * ds.scale[1] + ds.mean[1]
    for income, y in zip(raw_income, ds.y_train):
        row = df[np.isclose(df["income"], income)]
        assert row["outcome"].iloc[0] == ds.class_names[y]
    assert np.bincount(ds.y_train).tolist() == [int((ds.y_train == k).sum()) for k in range(3)]


@pytest.mark.parametrize(
    ("y", "task", "classes"),
    [(np.array(["b", "a", "b", "c"] * 10), "classification", ["a", "b", "c"]),
     (np.array([3, 1, 3, 7] * 10), "classification", ["1", "3", "7"]),
     (np.array([0.0, 1.0] * 20), "classification", ["0", "1"]),
     (np.array([True, False] * 20), "classification", ["False", "True"]),
     (np.arange(40), "regression", None),
     (np.linspace(0, 1, 40), "regression", None),
     (np.array([0.5, 1.0] * 20), "regression", None)],
)
def test_task_auto(y: np.ndarray, task: str, classes: list[str] | None) -> None:
    X = np.random.default_rng(0).normal(size=(len(y), 3))
    ds = from_arrays(X, y)
    assert ds.task == task and ds.class_names == classes
    assert from_arrays(X, y, task="auto").task == task
    if task == "classification":
        raw = np.asarray(y).astype(str) if y.dtype.kind != "b" else np.where(y, "True", "False")
        if y.dtype.kind == "f":
            raw = np.asarray(y).astype(int).astype(str)
        all_y = np.concatenate([ds.y_train, ds.y_test])
        assert sorted(np.asarray(ds.class_names)[all_y].tolist()) == sorted(raw.tolist())


def test_task_auto_threshold() -> None:
    X = np.zeros((100, 2))
    assert from_arrays(X, np.arange(100) % MAX_AUTO_CLASSES).task == "classification"
    assert from_arrays(X, np.arange(100) % (MAX_AUTO_CLASSES + 1)).task == "regression"
    assert from_arrays(X, np.arange(100) % (MAX_AUTO_CLASSES + 1), task="classification").n_classes == 21


def test_from_arrays_forced_tasks() -> None:
    X = np.random.default_rng(0).normal(size=(40, 2))
    ds = from_arrays(X, np.array([0, 1] * 20), task="regression")
    assert ds.task == "regression" and ds.y_train.dtype == np.float32
    with pytest.raises(ValueError, match="non-integer|values such as"):
        from_arrays(X, np.linspace(0, 1, 40), task="classification")


def test_from_arrays_tabular() -> None:
    rng = np.random.default_rng(1)
    X = rng.normal(3.0, 2.0, size=(100, 4))
    X[:, 2] = 5.0  # constant column
    y = (X[:, 0] > 3).astype(int)
    ds = from_arrays(X, y, name="mine", feature_names=["a", "b", "c", "d"], class_names=["low", "high"],
                     test_size=0.2, random_state=0)
    assert_common(ds)
    assert ds.name == "mine" and ds.feature_names == ["a", "b", "c", "d"]
    assert ds.class_names == ["low", "high"] and len(ds.X_test) == 20
    assert_standardised(ds.X_train)
    assert ds.scale[2] == 1.0
    # Class k is class_names[k]: 'high' rows have a > 3.
    raw = ds.X_test * ds.scale + ds.mean
    np.testing.assert_array_equal(ds.y_test, (raw[:, 0] > 3).astype(int))
    # Stratified.
    assert abs(ds.y_train.mean() - ds.y_test.mean()) < 0.06


def test_from_arrays_explicit_split_and_max_train() -> None:
    rng = np.random.default_rng(2)
    X, Xt = rng.normal(size=(50, 3)), rng.normal(size=(11, 3))
    y, yt = rng.normal(size=50), rng.normal(size=11)
    ds = from_arrays(X, y, X_test=Xt, y_test=yt, max_train=20)
    assert len(ds.X_train) == 20 and len(ds.X_test) == 11
    np.testing.assert_allclose(ds.X_test * ds.scale + ds.mean, Xt, atol=1e-5)
    np.testing.assert_allclose(ds.y_test, yt.astype(np.float32))
    assert_standardised(ds.X_train)
    assert ds.feature_names == ["x0", "x1", "x2"]


def test_from_arrays_images() -> None:
    rng = np.random.default_rng(3)
    X = rng.uniform(0, 255, size=(40, 3, 4, 5))
    X[:, 1] *= 0.1  # channels on different scales -> per-channel statistics
    y = np.arange(40) % 4
    ds = from_arrays(X, y)
    assert_common(ds)
    assert ds.image_shape == (3, 4, 5) and ds.mean.shape == (3,) and ds.n_features == 60
    assert ds.feature_names[0] == "ch0_pixel_0_0" and ds.feature_names[-1] == "ch2_pixel_3_4"
    for c in range(3):
        assert abs(float(ds.X_train[:, c].mean())) < 1e-4 and abs(float(ds.X_train[:, c].std()) - 1) < 1e-4
    assert ds.mean[1] == pytest.approx(ds.mean[0] * 0.1, rel=0.2)
    flat = from_arrays(X.reshape(40, -1), y, image_shape=(3, 4, 5))
    np.testing.assert_array_equal(flat.X_train, ds.X_train)
    gray = from_arrays(X[:, 0], y)
    assert gray.image_shape == (1, 4, 5) and gray.feature_names[-1] == "pixel_3_4"


def test_from_arrays_errors() -> None:
    X = np.zeros((10, 3))
    with pytest.raises(ValueError, match="X has 10 rows but y has 9"):
        from_arrays(X, np.zeros(9))
    with pytest.raises(ValueError, match="2 feature_names for 3 features"):
        from_arrays(X, np.arange(10) % 2, feature_names=["a", "b"])
    with pytest.raises(ValueError, match="missing or infinite"):
        from_arrays(np.full((10, 3), np.nan), np.arange(10) % 2)
    with pytest.raises(TypeError, match="numeric.*from_frame"):
        from_arrays(np.array([["a"]] * 10), np.arange(10) % 2)
    with pytest.raises(ValueError, match="0..1; found 0..2"):
        from_arrays(X, np.arange(10) % 3, class_names=["a", "b"])
    with pytest.raises(ValueError, match="duplicates"):
        from_arrays(X, np.arange(10) % 2, class_names=["a", "a"])
    with pytest.raises(ValueError, match="image_shape"):
        from_arrays(X, np.arange(10) % 2, image_shape=(2, 2, 2))
    with pytest.raises(ValueError, match="both X_test and y_test"):
        from_arrays(X, np.arange(10) % 2, X_test=X)


def test_csv_path(tmp_path: Path) -> None:
    df = people_frame()
    path = tmp_path / "people.csv"
    df.to_csv(path, index=False)
    ds = load_dataset(path)  # last column is the label
    assert ds.name == "people" and ds.class_names == ["healthy", "sick", "unknown"]
    ref = from_frame(df, "outcome", name="people")
    np.testing.assert_allclose(ds.X_train, ref.X_train, atol=1e-6)
    np.testing.assert_array_equal(ds.y_test, ref.y_test)
    assert ds.feature_names == ref.feature_names
    # Another label column; str path; '?' is missing; relative path under data_dir.
    by_smoker = load_dataset(str(path), label_column="smoker")
    assert by_smoker.class_names == ["no", "yes"] and "outcome=sick" in by_smoker.feature_names
    path.write_text(path.read_text().replace("Oslo", "?", 1))
    assert "city=?" not in load_dataset(path).feature_names
    assert load_dataset("people.csv", tmp_path).name == "people"


def test_regression_csv(tmp_path: Path) -> None:
    from sklearn.datasets import load_diabetes

    bunch = load_diabetes(as_frame=True, scaled=False)
    path = tmp_path / "diabetes.csv"
    bunch.frame.to_csv(path, index=False)
    ds = load_dataset(path, test_size=0.25, random_state=0)
    assert_common(ds)
    assert ds.task == "regression" and ds.name == "diabetes" and ds.n_features == 10
    # 'sex' has two numeric values: numeric, so standardised (not one-hot).
    assert ds.feature_names == [str(c) for c in bunch.feature_names]
    reg = load_dataset("diabetes", test_size=0.25, random_state=0)
    np.testing.assert_allclose(np.sort(ds.y_train), np.sort(reg.y_train))
    assert_standardised(ds.X_train)


def test_parquet_path(tmp_path: Path) -> None:
    pytest.importorskip("pyarrow")
    df = people_frame()
    df.to_parquet(tmp_path / "people.parquet")
    df.to_csv(tmp_path / "people.csv", index=False)
    a = load_dataset(tmp_path / "people.parquet")
    b = load_dataset(tmp_path / "people.csv")
    assert a.name == "people" and a.feature_names == b.feature_names
    np.testing.assert_allclose(a.X_train, b.X_train, atol=1e-5)
    np.testing.assert_array_equal(a.y_train, b.y_train)


def test_npz_xy(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    X = rng.normal(size=(60, 5))
    y = rng.integers(0, 3, 60)
    np.savez(tmp_path / "blobs.npz", X=X, y=y, feature_names=np.array(list("abcde")),
             class_names=np.array(["r", "g", "b"]))
    ds = load_dataset(tmp_path / "blobs.npz", test_size=0.5)
    assert ds.name == "blobs" and ds.feature_names == list("abcde") and ds.class_names == ["r", "g", "b"]
    assert len(ds.X_test) == 30
    ref = from_arrays(X, y, test_size=0.5, class_names=["r", "g", "b"])
    np.testing.assert_array_equal(ds.X_train, ref.X_train)
    assert load_dataset(tmp_path / "blobs.npz", class_names=["x", "y", "z"]).class_names == ["x", "y", "z"]


def test_npz_split(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    arrays = {"X_train": rng.normal(size=(30, 1, 6, 6)), "y_train": np.arange(30) % 2,
              "X_test": rng.normal(size=(8, 1, 6, 6)), "y_test": np.arange(8) % 2}
    np.savez(tmp_path / "tiny_images.npz", **arrays)
    ds = load_dataset(tmp_path / "tiny_images.npz", test_size=0.9)  # explicit split wins
    assert ds.image_shape == (1, 6, 6) and len(ds.X_train) == 30 and len(ds.X_test) == 8
    np.testing.assert_array_equal(ds.y_test, arrays["y_test"])
    np.testing.assert_allclose(ds.X_test * ds.scale[0] + ds.mean[0], arrays["X_test"], atol=1e-5)


def test_npz_errors(tmp_path: Path) -> None:
    np.savez(tmp_path / "bad.npz", features=np.zeros((3, 2)))
    with pytest.raises(ValueError, match="expected arrays 'X' and 'y'.*features"):
        load_dataset(tmp_path / "bad.npz")
    np.savez(tmp_path / "obj.npz", X=np.zeros((4, 2)), y=np.array([{}, {}, {}, {}], dtype=object))
    with pytest.raises(ValueError, match="obj.npz"):  # never unpickled
        load_dataset(tmp_path / "obj.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip file")
    with pytest.raises(ValueError, match="junk.npz"):
        load_dataset(tmp_path / "junk.npz")


def make_idx_folder(folder: Path, n_train: int = 24, n_test: int = 12, h: int = 6, w: int = 5,
                    names: str = "mnist") -> dict[str, np.ndarray]:
    rng = np.random.default_rng(6)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, h, w), dtype=np.uint8),
        "train-labels-idx1-ubyte": (np.arange(n_train) % 3).astype(np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, h, w), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": (np.arange(n_test) % 3).astype(np.uint8),
    }
    for fn, arr in arrays.items():
        if names == "emnist":
            fn = "emnist-letters-" + fn.replace("t10k", "test")
        write_gz(folder / (fn + ".gz"), idx_bytes(arr))
    return arrays


def test_idx_folder_with_classes_txt(tmp_path: Path) -> None:
    folder = tmp_path / "shapes"
    arrays = make_idx_folder(folder)
    (folder / "classes.txt").write_text("circle\nsquare\ntriangle\n")
    ds = load_dataset(folder)
    assert_common(ds)
    assert ds.name == "shapes" and ds.class_names == ["circle", "square", "triangle"]
    assert ds.image_shape == (1, 6, 5) and ds.X_train.shape == (24, 1, 6, 5) and len(ds.X_test) == 12
    np.testing.assert_array_equal(ds.y_train, arrays["train-labels-idx1-ubyte"])
    np.testing.assert_allclose(ds.X_test[:, 0] * ds.scale[0] + ds.mean[0],
                               arrays["t10k-images-idx3-ubyte"] / 255.0, atol=1e-5)
    # class_names beats classes.txt; too few names is an error naming the file.
    assert load_dataset(folder, class_names=["a", "b", "c"]).class_names == ["a", "b", "c"]
    (folder / "classes.txt").write_text("circle\nsquare\n")
    with pytest.raises(ValueError, match="classes.txt names 2 classes but the labels go up to 2"):
        load_dataset(folder)


def test_idx_folder_other_names_and_defaults(tmp_path: Path) -> None:
    folder = tmp_path / "letters"
    make_idx_folder(folder, names="emnist")
    ds = load_dataset(folder, max_train=10)
    assert ds.name == "letters" and ds.class_names == ["0", "1", "2"] and len(ds.X_train) == 10
    with pytest.raises(ValueError, match="regression"):
        load_dataset(folder, task="regression")


def test_idx_folder_incomplete(tmp_path: Path) -> None:
    folder = tmp_path / "half"
    make_idx_folder(folder)
    (folder / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(FileNotFoundError, match="missing t10k-labels-idx1-ubyte"):
        load_dataset(folder)


def test_registry_options() -> None:
    assert load_dataset("wine", class_names=["a", "b", "c"]).class_names == ["a", "b", "c"]
    assert load_dataset("wine", task="classification").task == "classification"
    with pytest.raises(ValueError, match="'wine' is a classification dataset"):
        load_dataset("wine", task="regression")
    with pytest.raises(ValueError, match="3 classes but 2 class_names"):
        load_dataset("wine", class_names=["a", "b"])
    with pytest.raises(ValueError, match="label_column applies to .csv/.parquet"):
        load_dataset("wine", label_column="alcohol")


def test_bad_paths(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no such file or folder.*missing.csv.*breast_cancer"):
        load_dataset(tmp_path / "missing.csv")
    with pytest.raises(FileNotFoundError, match="missing.csv"):
        load_dataset("missing.csv")
    (tmp_path / "table.xlsx").write_bytes(b"x")
    with pytest.raises(ValueError, match=r"unsupported file type \.xlsx"):
        load_dataset(tmp_path / "table.xlsx")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(ValueError, match="empty.csv: cannot read it as CSV"):
        load_dataset(tmp_path / "empty.csv")
    (tmp_path / "one.csv").write_text("a\n1\n2\n")
    with pytest.raises(ValueError, match="at least 2 columns"):
        load_dataset(tmp_path / "one.csv")
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(FileNotFoundError, match="not a complete IDX image folder"):
        load_dataset(tmp_path / "empty_dir")
    with pytest.raises(ValueError, match="label_column applies"):
        load_dataset(tmp_path / "empty_dir", label_column="y")
    with pytest.raises(TypeError, match="str or a path"):
        load_dataset(3)  # type: ignore[arg-type]
    # Nothing was written next to the inputs.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.csv", "empty_dir", "one.csv", "table.xlsx"]
