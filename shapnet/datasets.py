"""Dataset loaders for ShapNet experiments.

Every loader returns a :class:`Dataset`: a train/test split of float32 features,
already standardised with statistics fitted on the training split only, plus the
metadata (feature names, class names, image shape) that explanation code needs.

Three ways in:

* a registry name, bundled with scikit-learn (no download): ``breast_cancer``,
  ``wine``, ``digits`` (8x8 images) and ``diabetes`` (regression);
* a registry name read from a data directory: ``yeast`` and ``adult`` (UCI) and ``mnist``;
* your own data: :func:`load_dataset` with a path (``.csv``, ``.tsv``,
  ``.parquet``, ``.npz`` or a folder of IDX image files), or
  :func:`from_arrays` / :func:`from_frame` in Python. See ``docs/guide/data.md``.

The data directory is the ``data_dir`` argument of :func:`load_dataset`, or, when
that is ``None``, the environment variable ``SHAPNET_DATA``. It may be either the
data *root* (holding ``yeast/``, ``adult/`` and ``mnist/`` sub-folders) or the
dataset's own folder.

Example:
    >>> from shapnet.datasets import load_dataset
    >>> ds = load_dataset("wine", random_state=0)
    >>> ds.X_train.shape[1], ds.n_classes
    (13, 3)

Only numpy and scikit-learn are needed, plus pandas for tables
(:func:`from_frame`, ``.csv``/``.parquet`` paths) and pyarrow for Parquet: the
``data`` extra, ``pip install 'shapnet[data]'``. Nothing here imports torch.
"""

from __future__ import annotations

import dataclasses
import gzip
import os
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "DATASETS",
    "ENV_VAR",
    "MAX_AUTO_CLASSES",
    "Dataset",
    "from_arrays",
    "from_frame",
    "list_datasets",
    "load_dataset",
    "read_idx",
]

#: Environment variable consulted when ``data_dir`` is not given.
ENV_VAR = "SHAPNET_DATA"

Task = Literal["classification", "regression"]


# --------------------------------------------------------------------------- #
# Container
# --------------------------------------------------------------------------- #
@dataclass(frozen=True, eq=False)
class Dataset:
    """A standardised train/test split plus its metadata.

    ``eq=False`` keeps identity comparison and hashing (element-wise comparison
    of arrays has no single truth value).

    Attributes:
        name: Registry name of the dataset (e.g. ``"adult"``), the file's stem
            for data loaded from a path, or the name given to
            :func:`from_arrays` / :func:`from_frame`.
        X_train: Training features, float32, shape ``(n_train, d)`` for tabular
            sets or ``(n_train, C, H, W)`` for image sets.
        X_test: Test features, float32, shape ``(n_test, d)`` or
            ``(n_test, C, H, W)``.
        y_train: Training targets, shape ``(n_train,)``: int64 class indices
            into ``class_names`` for classification, float32 for regression.
        y_test: Test targets, shape ``(n_test,)``, same dtype as ``y_train``.
        feature_names: One name per scalar input feature, length
            ``n_features`` (for images, ``"pixel_r_c"`` in row-major order).
        class_names: Class labels, ``class_names[k]`` is the label of class
            index ``k``; ``None`` for regression.
        task: ``"classification"`` or ``"regression"``.
        image_shape: ``(C, H, W)`` for image sets, else ``None``.
        mean: Standardisation offset fitted on the training split, float32.
            Shape ``(d,)`` for tabular sets (0 for one-hot columns), ``(C,)``
            for image sets (one value per channel; for ``mnist``, ``digits`` and
            IDX folders a single value in [0, 1] pixel units; for
            :func:`from_arrays` in the arrays' own units).
        scale: Standardisation divisor, same shape as ``mean`` (1 for one-hot
            and constant columns). Raw features are recovered as
            ``X * scale + mean`` (per channel for images).
    """

    name: str
    X_train: np.ndarray
    X_test: np.ndarray
    y_train: np.ndarray
    y_test: np.ndarray
    feature_names: list[str]
    class_names: list[str] | None
    task: Task
    image_shape: tuple[int, int, int] | None
    mean: np.ndarray
    scale: np.ndarray

    def __post_init__(self) -> None:
        if len(self.X_train) != len(self.y_train):
            raise ValueError(
                f"{self.name}: X_train has {len(self.X_train)} rows but y_train has {len(self.y_train)}"
            )
        if len(self.X_test) != len(self.y_test):
            raise ValueError(
                f"{self.name}: X_test has {len(self.X_test)} rows but y_test has {len(self.y_test)}"
            )
        if len(self.feature_names) != self.n_features:
            raise ValueError(
                f"{self.name}: {len(self.feature_names)} feature names for {self.n_features} features"
            )
        if self.task not in ("classification", "regression"):
            raise ValueError(f"task must be 'classification' or 'regression', got {self.task!r}")
        if (self.task == "regression") != (self.class_names is None):
            raise ValueError("class_names must be None exactly when task == 'regression'")

    @property
    def n_features(self) -> int:
        """Number of scalar input features, ``prod(X_train.shape[1:])``."""
        return int(np.prod(self.X_train.shape[1:]))

    @property
    def n_classes(self) -> int:
        """Number of classes (``len(class_names)``), or 1 for regression."""
        return 1 if self.class_names is None else len(self.class_names)

    def __repr__(self) -> str:
        return (
            f"Dataset(name={self.name!r}, task={self.task!r}, "
            f"X_train={tuple(self.X_train.shape)}, X_test={tuple(self.X_test.shape)}, "
            f"n_features={self.n_features}, n_classes={self.n_classes}, "
            f"image_shape={self.image_shape})"
        )


class _Loader(Protocol):
    def __call__(
        self,
        data_dir: str | os.PathLike[str] | None,
        *,
        test_size: float,
        random_state: int,
        max_train: int | None,
    ) -> Dataset: ...


# --------------------------------------------------------------------------- #
# Shared helpers
# --------------------------------------------------------------------------- #
def _fit_standardiser(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-column mean and std of ``X`` (shape ``(n, d)``), std 0 replaced by 1.

    Returns:
        ``(mean, scale)``, both float64 of shape ``(d,)``.
    """
    X64 = np.asarray(X, dtype=np.float64)
    mean = X64.mean(axis=0)
    scale = X64.std(axis=0)
    scale[~(scale > 0)] = 1.0
    return mean, scale


def _apply(X: np.ndarray, mean: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """``(X - mean) / scale`` computed in float64, returned as float32."""
    return ((np.asarray(X, dtype=np.float64) - mean) / scale).astype(np.float32)


def _subsample_idx(n: int, max_train: int | None, random_state: int) -> np.ndarray | None:
    """Indices (sorted, shape ``(min(n, max_train),)``) of a deterministic subsample.

    Returns ``None`` when no subsampling is needed.
    """
    if max_train is None:
        return None
    if isinstance(max_train, bool) or not isinstance(max_train, (int, np.integer)) or max_train < 1:
        raise ValueError(f"max_train must be a positive integer or None, got {max_train!r}")
    if max_train >= n:
        return None
    rng = np.random.default_rng(random_state)
    return np.sort(rng.choice(n, size=int(max_train), replace=False))


def _split(
    X: np.ndarray,
    y: np.ndarray,
    *,
    test_size: float,
    random_state: int,
    stratify: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Shuffled train/test split (stratified on ``y`` when ``stratify``)."""
    from sklearn.model_selection import train_test_split

    X_tr, X_te, y_tr, y_te = train_test_split(
        X, y, test_size=test_size, random_state=random_state, stratify=y if stratify else None
    )
    return X_tr, X_te, y_tr, y_te


def _tabular(
    name: str,
    X: np.ndarray,
    y: np.ndarray,
    feature_names: list[str],
    class_names: list[str] | None,
    *,
    test_size: float,
    random_state: int,
    max_train: int | None,
) -> Dataset:
    """Split, subsample, and standardise a numeric table.

    Args:
        X: Raw features, shape ``(n, d)``.
        y: Class indices (classification, stratified split) or real targets
            (regression when ``class_names`` is None), shape ``(n,)``.
    """
    regression = class_names is None
    X_tr, X_te, y_tr, y_te = _split(
        X, y, test_size=test_size, random_state=random_state, stratify=not regression
    )
    idx = _subsample_idx(len(X_tr), max_train, random_state)
    if idx is not None:
        X_tr, y_tr = X_tr[idx], y_tr[idx]
    mean, scale = _fit_standardiser(X_tr)
    y_dtype = np.float32 if regression else np.int64
    return Dataset(
        name=name,
        X_train=_apply(X_tr, mean, scale),
        X_test=_apply(X_te, mean, scale),
        y_train=np.asarray(y_tr, dtype=y_dtype),
        y_test=np.asarray(y_te, dtype=y_dtype),
        feature_names=list(feature_names),
        class_names=None if class_names is None else list(class_names),
        task="regression" if regression else "classification",
        image_shape=None,
        mean=mean.astype(np.float32),
        scale=scale.astype(np.float32),
    )


def _images(
    name: str,
    X_train: np.ndarray,
    y_train: np.ndarray,
    X_test: np.ndarray,
    y_test: np.ndarray,
    max_value: float,
    class_names: list[str],
    *,
    random_state: int,
    max_train: int | None,
) -> Dataset:
    """Scale single-channel images to [0, 1], then standardise with one global mean/std.

    Args:
        X_train: Raw images, shape ``(n_train, H, W)``, values in ``[0, max_value]``.
        X_test: Raw images, shape ``(n_test, H, W)``.
        max_value: Value mapped to 1.0 (255 for MNIST, 16 for sklearn digits).
    """
    idx = _subsample_idx(len(X_train), max_train, random_state)
    if idx is not None:
        X_train, y_train = X_train[idx], y_train[idx]
    h, w = X_train.shape[1:]
    x01 = np.asarray(X_train, dtype=np.float64) / max_value
    mean = float(x01.mean())
    std = float(x01.std())
    std = std if std > 0 else 1.0
    del x01

    def prep(X: np.ndarray) -> np.ndarray:
        out = np.asarray(X, dtype=np.float32).reshape(len(X), 1, h, w)
        out *= np.float32(1.0 / max_value)
        out -= np.float32(mean)
        out /= np.float32(std)
        return out

    return Dataset(
        name=name,
        X_train=prep(X_train),
        X_test=prep(X_test),
        y_train=np.asarray(y_train, dtype=np.int64),
        y_test=np.asarray(y_test, dtype=np.int64),
        feature_names=[f"pixel_{r}_{c}" for r in range(h) for c in range(w)],
        class_names=list(class_names),
        task="classification",
        image_shape=(1, int(h), int(w)),
        mean=np.array([mean], dtype=np.float32),
        scale=np.array([std], dtype=np.float32),
    )


# --------------------------------------------------------------------------- #
# Locating files
# --------------------------------------------------------------------------- #
_SOURCES = {
    "adult": "the UCI Machine Learning Repository, https://archive.ics.uci.edu/dataset/2/adult "
    "(doi:10.24432/C5XW20; files adult.data and adult.test)",
    "yeast": "the UCI Machine Learning Repository, https://archive.ics.uci.edu/dataset/110/yeast "
    "(doi:10.24432/C5KG68; file yeast.data)",
    "mnist": "http://yann.lecun.com/exdb/mnist/ (mirror: https://ossci-datasets.s3.amazonaws.com/mnist/; "
    "the four standard IDX .gz files)",
}


def _base_dir(data_dir: str | os.PathLike[str] | None) -> Path:
    """``data_dir``, else ``$SHAPNET_DATA``, else raise ValueError."""
    if data_dir is None:
        env = os.environ.get(ENV_VAR)
        if not env:
            raise ValueError(
                f"No data directory: pass data_dir=... or set the environment variable {ENV_VAR} "
                "to the folder holding the dataset (or the data root containing "
                "'yeast/', 'adult/', 'mnist/')."
            )
        data_dir = env
    return Path(data_dir).expanduser()


def _find_files(name: str, data_dir: str | os.PathLike[str] | None, filenames: list[str]) -> list[Path]:
    """Locate ``filenames`` in ``<base>/<name>/`` or ``<base>/``.

    Each entry of ``filenames`` may be a ``.gz`` name; the uncompressed name is
    accepted as a fallback.

    Returns:
        The resolved paths, in the order of ``filenames``.

    Raises:
        ValueError: No directory given and ``SHAPNET_DATA`` unset.
        FileNotFoundError: A file is in neither candidate directory.
    """
    base = _base_dir(data_dir)
    candidates = [base / name, base]
    # Use the first candidate folder holding the first file; else report against
    # the first candidate folder that exists.
    for folder in candidates:
        if folder.is_dir() and _existing(folder, filenames[0]) is not None:
            break
    else:
        folder = next((c for c in candidates if c.is_dir()), base)
    paths: list[Path] = []
    for fn in filenames:
        p = _existing(folder, fn)
        if p is None:
            searched = " and ".join(str(c) for c in candidates)
            where = f"'{folder}'" if folder.is_dir() else f"'{folder}' (directory does not exist)"
            raise FileNotFoundError(
                f"{name}: expected file '{fn}' in {where}; searched {searched}. "
                f"Download it from {_SOURCES[name]} and put it in '{base / name}' "
                f"(data_dir / {ENV_VAR} may name either the data root or that folder)."
            )
        paths.append(p)
    return paths


def _existing(folder: Path, filename: str) -> Path | None:
    p = folder / filename
    if p.is_file():
        return p
    if filename.endswith(".gz"):
        raw = folder / filename[: -len(".gz")]
        if raw.is_file():
            return raw
    return None


# --------------------------------------------------------------------------- #
# IDX (MNIST) reader
# --------------------------------------------------------------------------- #
_IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def read_idx(path: str | os.PathLike[str], *, expected_magic: int | None = None) -> np.ndarray:
    """Read an IDX file (optionally gzip-compressed), as used by MNIST.

    The header is a big-endian 4-byte magic number ``0x0000TTNN`` (``TT`` the
    element type, ``NN`` the number of dimensions), then ``NN`` big-endian
    uint32 sizes, then the data. MNIST image files have magic 2051
    (uint8, 3-d) and label files 2049 (uint8, 1-d). Gzip compression is
    detected from the file's first bytes, not its name.

    Args:
        path: File to read.
        expected_magic: If given, the header's magic number must equal it.

    Returns:
        Array of shape ``(s_1, ..., s_NN)`` with the file's element type in
        native byte order (``uint8`` for MNIST).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: Bad magic number, bad gzip stream, or a data length that
            does not match the header (truncated or corrupt file); the
            message names the file.
    """
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            head = fh.read(2)
            fh.seek(0)
            if head == b"\x1f\x8b":
                with gzip.GzipFile(fileobj=fh) as gz:
                    buf = gz.read()
            else:
                buf = fh.read()
    except (OSError, EOFError, zlib.error) as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise ValueError(f"Corrupt IDX file {path}: cannot decompress ({exc})") from exc

    if len(buf) < 4:
        raise ValueError(f"Corrupt IDX file {path}: only {len(buf)} bytes, no header")
    magic = int.from_bytes(buf[:4], "big")
    if expected_magic is not None and magic != expected_magic:
        raise ValueError(f"Corrupt IDX file {path}: magic number {magic}, expected {expected_magic}")
    zero, code, ndim = int.from_bytes(buf[:2], "big"), buf[2], buf[3]
    if zero != 0 or code not in _IDX_DTYPES or ndim == 0:
        raise ValueError(f"Corrupt IDX file {path}: invalid magic number {magic} (0x{magic:08x})")
    header_len = 4 + 4 * ndim
    if len(buf) < header_len:
        raise ValueError(f"Corrupt IDX file {path}: truncated header")
    shape = tuple(int.from_bytes(buf[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = _IDX_DTYPES[code]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    actual = len(buf) - header_len
    if actual != expected:
        raise ValueError(
            f"Corrupt IDX file {path}: header says shape {shape} ({expected} data bytes) "
            f"but the file holds {actual} data bytes"
        )
    arr = np.frombuffer(buf, dtype=dtype, offset=header_len).reshape(shape)
    return arr.astype(dtype.newbyteorder("="), copy=True)


# --------------------------------------------------------------------------- #
# Loaders: scikit-learn bundled
# --------------------------------------------------------------------------- #
def _sklearn_classification(name: str, sklearn_loader: str) -> _Loader:
    """Build a loader for a scikit-learn bundled classification set.

    Args:
        name: Registry name.
        sklearn_loader: Function name in ``sklearn.datasets`` (e.g. ``"load_wine"``).
    """

    def load(
        data_dir: str | os.PathLike[str] | None,
        *,
        test_size: float,
        random_state: int,
        max_train: int | None,
    ) -> Dataset:
        import sklearn.datasets

        bunch = getattr(sklearn.datasets, sklearn_loader)()
        return _tabular(
            name,
            bunch.data,
            bunch.target,
            [str(f) for f in bunch.feature_names],
            [str(c) for c in bunch.target_names],
            test_size=test_size,
            random_state=random_state,
            max_train=max_train,
        )

    load.__name__ = load.__qualname__ = f"_load_{name}"
    load.__doc__ = (
        f"scikit-learn's bundled ``{name}`` set (``sklearn.datasets.{sklearn_loader}``): "
        "stratified split, features standardised with train statistics. ``data_dir`` is ignored."
    )
    return load


_load_breast_cancer = _sklearn_classification("breast_cancer", "load_breast_cancer")
_load_wine = _sklearn_classification("wine", "load_wine")


def _load_diabetes(
    data_dir: str | os.PathLike[str] | None,
    *,
    test_size: float,
    random_state: int,
    max_train: int | None,
) -> Dataset:
    """scikit-learn diabetes regression (442 x 10).

    Features are loaded unscaled (``scaled=False``) and standardised with train
    statistics; the target (disease progression) stays in its original units so
    R² and MSE are the usual ones. Random (unstratified) split.
    """
    from sklearn.datasets import load_diabetes

    bunch = load_diabetes(scaled=False)
    return _tabular(
        "diabetes",
        bunch.data,
        bunch.target,
        [str(f) for f in bunch.feature_names],
        None,
        test_size=test_size,
        random_state=random_state,
        max_train=max_train,
    )


def _load_digits(
    data_dir: str | os.PathLike[str] | None,
    *,
    test_size: float,
    random_state: int,
    max_train: int | None,
) -> Dataset:
    """scikit-learn 8x8 digits (1797 images, 10 classes) as ``(N, 1, 8, 8)`` images.

    Stratified split; pixels (0..16) scaled to [0, 1] and standardised with the
    single global train mean/std, as for MNIST.
    """
    from sklearn.datasets import load_digits

    bunch = load_digits()
    X_tr, X_te, y_tr, y_te = _split(
        bunch.images, bunch.target, test_size=test_size, random_state=random_state, stratify=True
    )
    return _images(
        "digits",
        X_tr,
        y_tr,
        X_te,
        y_te,
        16.0,
        [str(c) for c in bunch.target_names],
        random_state=random_state,
        max_train=max_train,
    )


# --------------------------------------------------------------------------- #
# Loaders: from a data directory
# --------------------------------------------------------------------------- #
YEAST_FEATURES = ["mcg", "gvh", "alm", "mit", "erl", "pox", "vac", "nuc"]


def _load_yeast(
    data_dir: str | os.PathLike[str] | None,
    *,
    test_size: float,
    random_state: int,
    max_train: int | None,
) -> Dataset:
    """UCI Yeast (1484 x 8, 10 classes) from ``yeast.data``.

    Each line is ``Sequence_Name mcg gvh alm mit erl pox vac nuc class``,
    whitespace separated. The sequence name is dropped; class names are the
    class strings sorted alphabetically. Stratified split, features
    standardised with train statistics.
    """
    (path,) = _find_files("yeast", data_dir, ["yeast.data"])
    rows: list[list[float]] = []
    labels: list[str] = []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 10:
                raise ValueError(
                    f"{path}:{lineno}: expected 10 whitespace-separated fields, got {len(parts)}"
                )
            try:
                rows.append([float(v) for v in parts[1:9]])
            except ValueError as exc:
                raise ValueError(f"{path}:{lineno}: non-numeric feature ({exc})") from exc
            labels.append(parts[9])
    if not rows:
        raise ValueError(f"{path}: no data rows")
    class_names = sorted(set(labels))
    lookup = {c: i for i, c in enumerate(class_names)}
    y = np.array([lookup[c] for c in labels], dtype=np.int64)
    return _tabular(
        "yeast",
        np.array(rows, dtype=np.float64),
        y,
        YEAST_FEATURES,
        class_names,
        test_size=test_size,
        random_state=random_state,
        max_train=max_train,
    )


ADULT_COLUMNS = [
    "age",
    "workclass",
    "fnlwgt",
    "education",
    "education-num",
    "marital-status",
    "occupation",
    "relationship",
    "race",
    "sex",
    "capital-gain",
    "capital-loss",
    "hours-per-week",
    "native-country",
]
ADULT_NUMERIC = ["age", "fnlwgt", "education-num", "capital-gain", "capital-loss", "hours-per-week"]
ADULT_CATEGORICAL = [c for c in ADULT_COLUMNS if c not in ADULT_NUMERIC]
ADULT_CLASSES = ["<=50K", ">50K"]


def _read_adult_file(path: Path) -> tuple[list[list[str]], list[int]]:
    """Parse a UCI adult file, dropping comment lines (``|...``), blanks and rows with ``?``.

    Returns:
        ``(rows, labels)``: ``rows[i]`` has the 14 stripped attribute strings,
        ``labels[i]`` is 1 for ``>50K`` (trailing ``.`` stripped) else 0.
    """
    rows: list[list[str]] = []
    labels: list[int] = []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            line = line.strip()
            if not line or line.startswith("|"):
                continue
            parts = [p.strip() for p in line.split(",")]
            if len(parts) != 15:
                raise ValueError(f"{path}:{lineno}: expected 15 comma-separated fields, got {len(parts)}")
            if "?" in parts:
                continue
            label = parts[14].rstrip(".")
            if label not in ADULT_CLASSES:
                raise ValueError(f"{path}:{lineno}: unknown label {parts[14]!r}")
            rows.append(parts[:14])
            labels.append(ADULT_CLASSES.index(label))
    if not rows:
        raise ValueError(f"{path}: no complete data rows")
    return rows, labels


def _load_adult(
    data_dir: str | os.PathLike[str] | None,
    *,
    test_size: float,
    random_state: int,
    max_train: int | None,
) -> Dataset:
    """UCI Adult / Census income, official split: ``adult.data`` train, ``adult.test`` test.

    ``test_size`` is ignored (the official split is used); ``random_state``
    only drives ``max_train`` subsampling. Rows with any missing value (``?``)
    are dropped (30162 train / 15060 test rows remain from the UCI files).

    Encoding, in this column order:

    * the 6 numeric columns (``age, fnlwgt, education-num, capital-gain,
      capital-loss, hours-per-week``) standardised with train mean/std;
    * the 8 categorical columns (``workclass, education, marital-status,
      occupation, relationship, race, sex, native-country``) one-hot encoded
      with scikit-learn's ``OneHotEncoder`` fitted on the train rows
      (categories sorted, no column dropped, ``handle_unknown='ignore'`` so a
      category unseen in train gives an all-zero block). One-hot columns are
      left as 0/1 (their ``mean`` is 0 and ``scale`` 1). Feature names are
      ``"<column>=<category>"``, e.g. ``"workclass=Private"``.

    Label: 1 for ``>50K`` (``>50K.`` in the test file), 0 for ``<=50K``.
    """
    from sklearn.preprocessing import OneHotEncoder

    train_path, test_path = _find_files("adult", data_dir, ["adult.data", "adult.test"])
    rows_tr, y_tr = _read_adult_file(train_path)
    rows_te, y_te = _read_adult_file(test_path)
    idx = _subsample_idx(len(rows_tr), max_train, random_state)
    if idx is not None:
        rows_tr = [rows_tr[i] for i in idx]
        y_tr = [y_tr[i] for i in idx]

    num_idx = [ADULT_COLUMNS.index(c) for c in ADULT_NUMERIC]
    cat_idx = [ADULT_COLUMNS.index(c) for c in ADULT_CATEGORICAL]

    def split_cols(rows: list[list[str]], path: Path) -> tuple[np.ndarray, np.ndarray]:
        arr = np.array(rows, dtype=object)
        try:
            num = arr[:, num_idx].astype(np.float64)
        except ValueError as exc:
            raise ValueError(f"{path}: non-numeric value in a numeric column ({exc})") from exc
        return num, arr[:, cat_idx].astype(str)

    num_tr, cat_tr = split_cols(rows_tr, train_path)
    num_te, cat_te = split_cols(rows_te, test_path)

    mean_num, scale_num = _fit_standardiser(num_tr)
    enc = OneHotEncoder(handle_unknown="ignore", sparse_output=False, dtype=np.float64)
    oh_tr = enc.fit_transform(cat_tr)
    oh_te = enc.transform(cat_te)
    n_oh = oh_tr.shape[1]

    mean = np.concatenate([mean_num, np.zeros(n_oh)])
    scale = np.concatenate([scale_num, np.ones(n_oh)])
    feature_names = list(ADULT_NUMERIC) + [
        f"{col}={cat}" for col, cats in zip(ADULT_CATEGORICAL, enc.categories_) for cat in cats
    ]
    return Dataset(
        name="adult",
        X_train=_apply(np.hstack([num_tr, oh_tr]), mean, scale),
        X_test=_apply(np.hstack([num_te, oh_te]), mean, scale),
        y_train=np.asarray(y_tr, dtype=np.int64),
        y_test=np.asarray(y_te, dtype=np.int64),
        feature_names=feature_names,
        class_names=list(ADULT_CLASSES),
        task="classification",
        image_shape=None,
        mean=mean.astype(np.float32),
        scale=scale.astype(np.float32),
    )


MNIST_FILES = [
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
]


def _load_mnist(
    data_dir: str | os.PathLike[str] | None,
    *,
    test_size: float,
    random_state: int,
    max_train: int | None,
) -> Dataset:
    """MNIST from the four standard IDX ``.gz`` files, official 60k/10k split.

    ``test_size`` is ignored. Images come back as ``(N, 1, 28, 28)`` float32:
    pixels scaled to [0, 1], then standardised with the single global train
    mean/std (≈0.1307 / 0.3081 on the full training set), so ``mean`` and
    ``scale`` have shape ``(1,)``. Uncompressed files (same names without
    ``.gz``) are accepted too.
    """
    paths = _find_files("mnist", data_dir, MNIST_FILES)
    X_tr = read_idx(paths[0], expected_magic=2051)
    y_tr = read_idx(paths[1], expected_magic=2049)
    X_te = read_idx(paths[2], expected_magic=2051)
    y_te = read_idx(paths[3], expected_magic=2049)
    for X, y, pi, pl in ((X_tr, y_tr, paths[0], paths[1]), (X_te, y_te, paths[2], paths[3])):
        if X.shape[0] != y.shape[0]:
            raise ValueError(f"{pi} has {X.shape[0]} images but {pl} has {y.shape[0]} labels")
        if X.shape[1:] != (28, 28):
            raise ValueError(f"{pi}: expected 28x28 images, got {X.shape[1]}x{X.shape[2]}")
        if y.size and int(y.max()) > 9:
            raise ValueError(f"{pl}: label {int(y.max())} outside 0..9")
    return _images(
        "mnist",
        X_tr,
        y_tr,
        X_te,
        y_te,
        255.0,
        [str(d) for d in range(10)],
        random_state=random_state,
        max_train=max_train,
    )


# --------------------------------------------------------------------------- #
# Registry and entry points
# --------------------------------------------------------------------------- #
#: Dataset name -> loader. Every loader takes ``(data_dir, *, test_size,
#: random_state, max_train)`` and returns a :class:`Dataset`.
DATASETS: dict[str, _Loader] = {
    "breast_cancer": _load_breast_cancer,
    "wine": _load_wine,
    "digits": _load_digits,
    "diabetes": _load_diabetes,
    "yeast": _load_yeast,
    "adult": _load_adult,
    "mnist": _load_mnist,
}


def list_datasets() -> list[str]:
    """Names accepted by :func:`load_dataset`, sorted."""
    return sorted(DATASETS)


# --------------------------------------------------------------------------- #
# Your own data: arrays, frames, files
# --------------------------------------------------------------------------- #
#: ``task="auto"``: an integer (or integer-valued) target with at most this many
#: distinct values is a class label; string and boolean targets always are.
MAX_AUTO_CLASSES = 20
#: A categorical column with more distinct training values than this gets a
#: warning: it is probably an identifier, and one-hot encoding it adds that many features.
MANY_CATEGORIES = 100
#: Cell values read as missing in CSV files, besides pandas' defaults ("", "NA", "NaN", ...).
CSV_MISSING = ["?"]

_TABLE_SUFFIXES = (".csv", ".tsv", ".parquet", ".pq")
_FORMATS = "a .csv, .tsv (optionally .gz), .parquet or .npz file or a folder of IDX files"


def _check_task(task: str | None) -> Task | None:
    """``None`` for ``None``/``"auto"``, else the validated task."""
    if task is None or task == "auto":
        return None
    if task == "classification":
        return "classification"
    if task == "regression":
        return "regression"
    raise ValueError(f"task must be 'auto', 'classification' or 'regression', got {task!r}")


def _check_class_names(class_names: object) -> list[str] | None:
    if class_names is None:
        return None
    if isinstance(class_names, (str, bytes)):
        raise TypeError(f"class_names must be a list of strings, got the single string {class_names!r}")
    if not isinstance(class_names, Iterable):
        raise TypeError(f"class_names must be a list of strings, got {type(class_names).__name__}")
    names = [str(c) for c in class_names]
    if not names:
        raise ValueError("class_names is empty; give one name per class or None")
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"class_names has duplicates: {dup}")
    return names


def _as_target(y: object, what: str) -> np.ndarray:
    """``y`` as a 1-D array: bool, numeric (float64/int) or text (object of str)."""
    arr = np.asarray(y)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise ValueError(f"{what} must be 1-D (one target per row), got shape {arr.shape}")
    if arr.dtype.kind in "US":
        return arr.astype(str).astype(object)
    if arr.dtype.kind == "O":
        try:
            return arr.astype(np.float64)
        except (TypeError, ValueError):
            return np.array([str(v) for v in arr], dtype=object)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{what} must hold numbers, booleans or strings, got dtype {arr.dtype}")
    return arr


def _infer_task(y: np.ndarray) -> Task:
    """Classification for text/bool targets and integer-valued ones with few distinct values."""
    if y.dtype.kind in "bO":
        return "classification"
    if y.dtype.kind == "f":
        finite = np.isfinite(y)
        if not finite.all() or np.any(y != np.round(y)):
            return "regression"
    return "classification" if len(np.unique(y)) <= MAX_AUTO_CLASSES else "regression"


def _encode_classes(y: np.ndarray, class_names: list[str] | None, what: str) -> tuple[np.ndarray, list[str]]:
    """Class indices (int64, shape ``(n,)``) and class names for a target array.

    Text targets: ``class_names`` (if given) lists every value, in class order;
    else the sorted distinct values. Numeric targets must be integers: with
    ``class_names`` they are class indices (``0 .. len(class_names) - 1``),
    else the sorted distinct values become classes ``0, 1, ...``.
    """
    if y.dtype.kind == "O":
        if class_names is None:
            names, idx = np.unique(y.astype(str), return_inverse=True)
            return idx.astype(np.int64), [str(n) for n in names]
        lookup = {c: i for i, c in enumerate(class_names)}
        unknown = sorted({v for v in y.tolist() if v not in lookup})
        if unknown:
            raise ValueError(
                f"{what}: target values {unknown[:5]} are not in class_names {class_names}; with text "
                "targets, class_names lists every target value and fixes the class order"
            )
        return np.array([lookup[v] for v in y.tolist()], dtype=np.int64), class_names
    yf = y.astype(np.float64)
    if not np.isfinite(yf).all():
        raise ValueError(f"{what}: the target has missing or infinite values")
    if np.any(yf != np.round(yf)):
        bad = yf[yf != np.round(yf)][:3].tolist()
        raise ValueError(
            f"{what}: classification needs integer or string targets, found values such as {bad}; "
            "use task='regression' (CLI: --task regression)"
        )
    yi = yf.astype(np.int64)
    if class_names is not None:
        if yi.size and (yi.min() < 0 or yi.max() >= len(class_names)):
            raise ValueError(
                f"{what}: integer targets are indices into class_names, so they must lie in "
                f"0..{len(class_names) - 1}; found {yi.min()}..{yi.max()}"
            )
        return yi, class_names
    if y.dtype.kind == "b":
        return yi, ["False", "True"]
    values, idx = np.unique(yi, return_inverse=True)
    return idx.astype(np.int64), [str(v) for v in values.tolist()]


def _targets(
    y: np.ndarray, task: Task | None, class_names: list[str] | None, what: str
) -> tuple[np.ndarray, Task, list[str] | None]:
    """Encode a raw target: ``(y, task, class_names)`` with y int64 indices or float32 values."""
    task = task or _infer_task(y)
    if task == "classification":
        codes, names = _encode_classes(y, class_names, what)
        if len(names) < 2:
            raise ValueError(f"{what}: classification needs at least 2 classes, found only {names}")
        return codes, task, names
    if class_names is not None:
        raise ValueError(f"{what}: class_names was given but the task is regression")
    if y.dtype.kind == "O":
        raise ValueError(
            f"{what}: regression needs a numeric target, got text values such as {y[:3].tolist()}; "
            "use task='classification'"
        )
    yf = y.astype(np.float64)
    if not np.isfinite(yf).all():
        raise ValueError(f"{what}: the target has missing or infinite values")
    return yf.astype(np.float32), task, None


def _can_stratify(y: np.ndarray, test_size: float) -> bool:
    """Whether a stratified split is possible (every class twice, room for every class)."""
    counts = np.bincount(y)
    counts = counts[counts > 0]
    n = len(y)
    n_test = int(np.ceil(test_size * n)) if isinstance(test_size, float) else int(test_size)
    return bool(counts.min() >= 2 and n_test >= len(counts) and n - n_test >= len(counts))


def _split_indices(
    y: np.ndarray, task: Task, *, test_size: float, random_state: int
) -> tuple[np.ndarray, np.ndarray]:
    """Train and test row indices; stratified for classification when possible."""
    idx = np.arange(len(y))
    stratify = task == "classification" and _can_stratify(y, test_size)
    tr, te, _, _ = _split(idx, y, test_size=test_size, random_state=random_state, stratify=stratify)
    return np.sort(tr), np.sort(te)


def _as_features(X: object, what: str) -> np.ndarray:
    arr = np.asarray(X)
    if arr.dtype.kind not in "biuf":
        try:
            arr = arr.astype(np.float64)
        except (TypeError, ValueError):
            raise TypeError(
                f"{what} must be numeric, got dtype {arr.dtype}; for tables with text columns use "
                "from_frame (one-hot encodes them)"
            ) from None
    if arr.ndim < 2:
        raise ValueError(f"{what} must have shape (n, d), (n, H, W) or (n, C, H, W), got {arr.shape}")
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise ValueError(f"{what} has missing or infinite values; impute them first, or use from_frame")
    return arr


def _image_shape(shape: object) -> tuple[int, int, int]:
    if not isinstance(shape, Iterable):
        raise TypeError(f"image_shape must be (C, H, W) or (H, W), got {type(shape).__name__}")
    dims = tuple(int(s) for s in shape)
    if len(dims) == 2:
        dims = (1, *dims)
    if len(dims) != 3 or min(dims) < 1:
        raise ValueError(f"image_shape must be (C, H, W) or (H, W) with positive sizes, got {shape!r}")
    channels, height, width = dims
    return channels, height, width


def from_arrays(
    X: np.ndarray,
    y: np.ndarray,
    *,
    task: str | None = None,
    name: str = "arrays",
    feature_names: list[str] | None = None,
    class_names: list[str] | None = None,
    image_shape: tuple[int, ...] | None = None,
    test_size: float = 0.25,
    random_state: int = 0,
    max_train: int | None = None,
    X_test: np.ndarray | None = None,
    y_test: np.ndarray | None = None,
) -> Dataset:
    """A :class:`Dataset` from numeric arrays (tables or images).

    Tables (``X`` of shape ``(n, d)``) are standardised per column, images
    (``(n, C, H, W)``, ``(n, H, W)`` or flat rows with ``image_shape``) per
    channel, always with statistics of the training split only. Values stay
    in the arrays' own units (``mean``/``scale`` map back to them).

    Args:
        X: Features, shape ``(n, d)``, ``(n, H, W)`` (one channel) or ``(n, C, H, W)``.
        y: Targets, shape ``(n,)``: class labels (integers, strings, booleans)
            or real values.
        task: ``None``/``"auto"``, ``"classification"`` or ``"regression"``.
            Auto: string and boolean targets, and integer-valued ones with at
            most :data:`MAX_AUTO_CLASSES` distinct values, are classes; anything
            else is regression.
        name: The dataset's name (used in outputs and titles).
        feature_names: One per feature (tables: ``d``; default ``x0, x1, ...``;
            images: ``C*H*W``, default ``pixel_r_c``, ``ch{c}_pixel_r_c`` for ``C > 1``).
        class_names: Classes in index order. With integer targets, target
            ``k`` is class ``class_names[k]``; with string targets, every value
            must be listed and the list fixes the order. Default: the sorted
            distinct values (integer labels are then renumbered ``0, 1, ...``).
        image_shape: ``(C, H, W)`` (or ``(H, W)``) to read flat rows as images.
        test_size: Test fraction (ignored when ``X_test`` is given). The split
            is stratified for classification when every class has two rows.
        random_state: Seed of the split and of ``max_train`` subsampling.
        max_train: Keep at most this many (random) training rows.
        X_test: Test features of an explicit split (then ``X`` is the
            training split and nothing is split here); shaped like ``X``.
        y_test: Test targets of that split, shape ``(n_test,)``.

    Returns:
        The :class:`Dataset`: float32 features, int64 class indices or float32
        regression targets.

    Raises:
        ValueError: Shapes that disagree, missing values, a bad ``task`` or
            ``class_names``. TypeError: non-numeric ``X``.
    """
    task_ = _check_task(task)
    names = _check_class_names(class_names)
    X = _as_features(X, "X")
    y = _as_target(y, "y")
    if len(X) != len(y):
        raise ValueError(f"X has {len(X)} rows but y has {len(y)}")
    if (X_test is None) != (y_test is None):
        raise ValueError("give both X_test and y_test, or neither")
    n_train_rows = len(X)
    if X_test is not None:
        X_test = _as_features(X_test, "X_test")
        y_test = _as_target(y_test, "y_test")
        if len(X_test) != len(y_test):
            raise ValueError(f"X_test has {len(X_test)} rows but y_test has {len(y_test)}")
        if X_test.shape[1:] != X.shape[1:]:
            raise ValueError(f"X_test rows have shape {X_test.shape[1:]} but X rows have {X.shape[1:]}")
        if (y.dtype.kind == "O") != (y_test.dtype.kind == "O"):
            raise ValueError("y and y_test must both be text or both be numeric")
        X = np.concatenate([X, X_test])
        y = np.concatenate([y, y_test])

    if image_shape is not None:
        shape = _image_shape(image_shape)
        if int(np.prod(X.shape[1:])) != int(np.prod(shape)):
            raise ValueError(
                f"image_shape {shape} holds {int(np.prod(shape))} values but X rows hold "
                f"{int(np.prod(X.shape[1:]))}"
            )
        X = X.reshape(len(X), *shape)
    elif X.ndim == 3:
        X = X[:, None]
    elif X.ndim > 4:
        raise ValueError(f"X must have shape (n, d), (n, H, W) or (n, C, H, W), got {X.shape}")
    image = X.ndim == 4

    y_enc, task_, names = _targets(y, task_, names, name)
    if X_test is None:
        tr, te = _split_indices(y_enc, task_, test_size=test_size, random_state=random_state)
    else:
        tr, te = np.arange(n_train_rows), np.arange(n_train_rows, len(X))
    sub = _subsample_idx(len(tr), max_train, random_state)
    if sub is not None:
        tr = tr[sub]
    X_tr, X_te = X[tr], X[te]

    if image:
        c, h, w = X.shape[1:]
        x64 = X_tr.astype(np.float64)
        mean = x64.mean(axis=(0, 2, 3))
        scale = x64.std(axis=(0, 2, 3))
        scale[~(scale > 0)] = 1.0
        del x64
        bshape = (1, c, 1, 1)
        X_tr_s = _apply(X_tr, mean.reshape(bshape), scale.reshape(bshape))
        X_te_s = _apply(X_te, mean.reshape(bshape), scale.reshape(bshape))
        default_names = [
            f"pixel_{r}_{q}" if c == 1 else f"ch{k}_pixel_{r}_{q}"
            for k in range(c)
            for r in range(h)
            for q in range(w)
        ]
        shape3: tuple[int, int, int] | None = (int(c), int(h), int(w))
    else:
        mean, scale = _fit_standardiser(X_tr)
        X_tr_s, X_te_s = _apply(X_tr, mean, scale), _apply(X_te, mean, scale)
        default_names = [f"x{i}" for i in range(X.shape[1])]
        shape3 = None
    if feature_names is None:
        feature_names = default_names
    else:
        feature_names = [str(f) for f in feature_names]
        if len(feature_names) != len(default_names):
            raise ValueError(f"{len(feature_names)} feature_names for {len(default_names)} features")
    return Dataset(
        name=str(name),
        X_train=X_tr_s,
        X_test=X_te_s,
        y_train=y_enc[tr],
        y_test=y_enc[te],
        feature_names=feature_names,
        class_names=names,
        task=task_,
        image_shape=shape3,
        mean=mean.astype(np.float32),
        scale=scale.astype(np.float32),
    )


def _import_pandas(what: str) -> Any:
    try:
        import pandas as pd
    except ImportError:
        raise ImportError(
            f"{what} needs pandas, which is not installed: "
            "pip install pandas (or: pip install 'shapnet[data]')"
        ) from None
    return pd


def from_frame(
    df: pd.DataFrame,
    target: str,
    *,
    task: str | None = None,
    name: str = "frame",
    class_names: list[str] | None = None,
    test_size: float = 0.25,
    random_state: int = 0,
    max_train: int | None = None,
) -> Dataset:
    """A :class:`Dataset` from a pandas DataFrame with numeric and categorical columns.

    The columns other than ``target`` become features through a scikit-learn
    ``ColumnTransformer`` fitted on the training split only:

    * numeric (and boolean) columns: missing values replaced by the training
      mean, then standardised (``StandardScaler``); names kept from the header;
    * every other column is categorical: one-hot encoded (categories seen in
      training, sorted), named ``"<column>=<value>"``; a missing value or a
      category not seen in training gives an all-zero block. One-hot columns
      stay 0/1 (``mean`` 0, ``scale`` 1).

    Numeric features come first, then the one-hot blocks, in header order.
    Rows whose target is missing are dropped. Needs pandas (the ``data`` or
    ``bench`` extra).

    Args:
        df: The table, one row per sample.
        target: The target column.
        task: ``None``/``"auto"``, ``"classification"`` or ``"regression"``
            (see :func:`from_arrays`).
        name: The dataset's name (``load_dataset`` uses the file's stem).
        class_names: Classes in index order (see :func:`from_arrays`).
        test_size: Test fraction, stratified for classification when possible.
        random_state: Seed of the split and of ``max_train`` subsampling.
        max_train: Keep at most this many (random) training rows.

    Raises:
        TypeError: ``df`` is not a DataFrame. ValueError: unknown ``target``,
            no feature column, no rows, bad ``task``/``class_names``.
    """
    pd = _import_pandas("from_frame")
    if not isinstance(df, pd.DataFrame):
        raise TypeError(
            f"from_frame expects a pandas DataFrame, got {type(df).__name__}; use from_arrays for arrays"
        )
    if target not in df.columns:
        cols = [str(c) for c in df.columns]
        raise ValueError(
            f"{name}: no target column {target!r}; columns are {cols[:30]}{' ...' if len(cols) > 30 else ''}"
        )
    task_ = _check_task(task)
    names = _check_class_names(class_names)
    df = df[df[target].notna()]
    if len(df) == 0:
        raise ValueError(f"{name}: no rows with a value in the target column {target!r}")
    features = df.drop(columns=[target])
    if features.shape[1] == 0:
        raise ValueError(f"{name}: no feature columns besides the target {target!r}")
    columns = [str(c) for c in features.columns]
    if len(set(columns)) != len(columns):
        dup = sorted({c for c in columns if columns.count(c) > 1})
        raise ValueError(f"{name}: duplicate column names {dup}")
    features.columns = columns
    numeric = [
        c
        for c in columns
        if pd.api.types.is_bool_dtype(features[c]) or pd.api.types.is_numeric_dtype(features[c])
    ]
    categorical = [c for c in columns if c not in numeric]

    y_enc, task_, names = _targets(_as_target(df[target].to_numpy(), target), task_, names, name)
    tr, te = _split_indices(y_enc, task_, test_size=test_size, random_state=random_state)
    sub = _subsample_idx(len(tr), max_train, random_state)
    if sub is not None:
        tr = tr[sub]

    # Categorical cells as str objects, None where missing: one type per column for the encoder.
    clean = pd.DataFrame(
        {c: features[c].astype(np.float64) for c in numeric}
        | {
            c: pd.Series(_category_values(features[c]), index=features.index, dtype=object)
            for c in categorical
        },
        index=features.index,
    )[columns]
    train, test = clean.iloc[tr], clean.iloc[te]
    transformer, categories = _column_transformer(train, numeric, categorical, name)
    import warnings

    with warnings.catch_warnings():
        # Missing and unseen categories are encoded as all-zero on purpose.
        warnings.filterwarnings("ignore", message="Found unknown categories", category=UserWarning)
        Z_tr = transformer.fit_transform(train)
        Z_te = transformer.transform(test)
    n_oh = sum(len(c) for c in categories)
    if numeric:
        scaler = transformer.named_transformers_["num"].named_steps["scale"]
        mean = np.concatenate([scaler.mean_, np.zeros(n_oh)])
        scale = np.concatenate([scaler.scale_, np.ones(n_oh)])
    else:
        mean, scale = np.zeros(n_oh), np.ones(n_oh)
    feature_names = numeric + [f"{col}={cat}" for col, cats in zip(categorical, categories) for cat in cats]
    return Dataset(
        name=str(name),
        X_train=np.asarray(Z_tr, dtype=np.float32),
        X_test=np.asarray(Z_te, dtype=np.float32),
        y_train=y_enc[tr],
        y_test=y_enc[te],
        feature_names=feature_names,
        class_names=names,
        task=task_,
        image_shape=None,
        mean=mean.astype(np.float32),
        scale=scale.astype(np.float32),
    )


def _category_values(column: pd.Series) -> np.ndarray:
    """A column as object values: ``str(value)``, or ``None`` where missing."""
    values = column.astype(object)
    missing = column.isna().to_numpy()
    out = np.array([None if m else str(v) for v, m in zip(values.tolist(), missing)], dtype=object)
    return out


def _column_transformer(
    train: pd.DataFrame, numeric: list[str], categorical: list[str], name: str
) -> tuple[Any, list[list[str]]]:
    """An unfitted ColumnTransformer for ``train`` and the one-hot categories (sorted train values)."""
    import warnings

    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    categories = []
    for c in categorical:
        seen = sorted({v for v in train[c].tolist() if v is not None})
        if len(seen) > MANY_CATEGORIES:
            warnings.warn(
                f"{name}: categorical column {c!r} has {len(seen)} distinct values (an identifier?); "
                f"one-hot encoding adds {len(seen)} features. Drop the column if it is not a feature.",
                stacklevel=3,
            )
        categories.append(seen)
    parts = []
    if numeric:
        parts.append(
            (
                "num",
                Pipeline(
                    [
                        ("impute", SimpleImputer(strategy="mean", keep_empty_features=True)),
                        ("scale", StandardScaler()),
                    ]
                ),
                numeric,
            )
        )
    if categorical:
        parts.append(
            (
                "cat",
                OneHotEncoder(
                    categories=categories, handle_unknown="ignore", sparse_output=False, dtype=np.float64
                ),
                categorical,
            )
        )
    return ColumnTransformer(parts, remainder="drop", sparse_threshold=0.0), categories


def _read_table(path: Path) -> pd.DataFrame:
    """A CSV/TSV (optionally gzipped) or Parquet file as a DataFrame (header row required)."""
    pd = _import_pandas(f"reading {path.name}")
    suffixes = [s.lower() for s in path.suffixes]
    parquet = suffixes[-1] in (".parquet", ".pq")
    try:
        if parquet:
            try:
                df = pd.read_parquet(path)
            except ImportError:
                raise ImportError(
                    f"reading {path.name} needs pyarrow: "
                    "pip install pyarrow (or: pip install 'shapnet[data]')"
                ) from None
        else:
            sep = "\t" if ".tsv" in suffixes else ","
            df = pd.read_csv(path, sep=sep, skipinitialspace=True, na_values=CSV_MISSING, low_memory=False)
    except (ValueError, OSError) as exc:  # parser errors, bad encoding, corrupt Parquet, no permission
        kind = "Parquet" if parquet else "CSV"
        raise ValueError(f"{path}: cannot read it as {kind} ({' '.join(str(exc).split())})") from exc
    if df.shape[0] == 0 or df.shape[1] < 2:
        raise ValueError(
            f"{path}: expected a header row, then rows of at least 2 columns (features and a target); "
            f"found {df.shape[0]} rows x {df.shape[1]} columns"
        )
    return df


def _load_npz(
    path: Path,
    *,
    task: Task | None,
    class_names: list[str] | None,
    test_size: float,
    random_state: int,
    max_train: int | None,
    name: str,
) -> Dataset:
    """An ``.npz`` with ``X``, ``y`` or ``X_train``, ``y_train``, ``X_test``, ``y_test``
    (optional ``feature_names`` and ``class_names`` string arrays). Never unpickles."""
    import zipfile

    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise ValueError(f"{path}: cannot read it as .npz ({' '.join(str(exc).split())})") from exc
    split_keys = ("X_train", "y_train", "X_test", "y_test")
    if all(k in arrays for k in split_keys):
        X, y, X_te, y_te = (arrays[k] for k in split_keys)
    elif "X" in arrays and "y" in arrays:
        X, y, X_te, y_te = arrays["X"], arrays["y"], None, None
    else:
        raise ValueError(
            f"{path}: expected arrays 'X' and 'y', or 'X_train', 'y_train', 'X_test' and 'y_test'; "
            f"found {sorted(arrays)}"
        )
    feature_names = arrays["feature_names"].tolist() if "feature_names" in arrays else None
    if class_names is None and "class_names" in arrays:
        class_names = [str(c) for c in arrays["class_names"].tolist()]
    return from_arrays(
        X,
        y,
        task=task,
        name=name,
        feature_names=feature_names,
        class_names=class_names,
        test_size=test_size,
        random_state=random_state,
        max_train=max_train,
        X_test=X_te,
        y_test=y_te,
    )


def _idx_files(folder: Path, split_words: tuple[str, ...], kind: str) -> Path | None:
    """The one IDX file in ``folder`` whose name holds a split word and ends in ``<kind>-ubyte[.gz]``."""
    found: dict[str, list[Path]] = {}
    for p in sorted(folder.iterdir()):
        base = p.name.lower().removesuffix(".gz").replace(".", "-")
        if p.is_file() and base.endswith(f"{kind}-ubyte") and any(w in base for w in split_words):
            found.setdefault(base, []).append(p)
    if len(found) > 1:
        raise ValueError(
            f"{folder}: several {split_words[0]} {kind} files: {sorted(found)}; keep one set per folder"
        )
    if not found:
        return None
    (paths,) = found.values()
    return paths[0]


def _load_idx_folder(
    folder: Path,
    *,
    task: Task | None,
    class_names: list[str] | None,
    random_state: int,
    max_train: int | None,
    name: str,
) -> Dataset:
    """A folder of IDX files in MNIST's layout: any image set, any image size.

    Files: ``*train*images-idx3-ubyte``, ``*train*labels-idx1-ubyte``,
    ``*t10k*`` or ``*test*`` ditto (each optionally ``.gz``). Labels are class
    indices; class names come from ``class_names``, else ``classes.txt`` (one
    per line), else ``"0", "1", ...``. uint8 pixels are scaled to [0, 1]
    (other types kept as they are), then standardised like MNIST.
    """
    if task == "regression":
        raise ValueError(
            f"{folder}: an IDX image folder holds class labels; task='regression' does not apply"
        )
    roles = [
        (("train",), "images-idx3"),
        (("train",), "labels-idx1"),
        (("t10k", "test"), "images-idx3"),
        (("t10k", "test"), "labels-idx1"),
    ]
    paths = [_idx_files(folder, words, kind) for words, kind in roles]
    if any(p is None for p in paths):
        missing = [
            f"{'train' if w == ('train',) else 't10k'}-{k}-ubyte[.gz]"
            for (w, k), p in zip(roles, paths)
            if p is None
        ]
        raise FileNotFoundError(
            f"{folder}: not a complete IDX image folder; missing {', '.join(missing)} "
            "(expected train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, "
            "t10k-labels-idx1-ubyte, each optionally .gz, as in MNIST)"
        )
    X_tr, y_tr, X_te, y_te = (read_idx(p) for p in paths if p is not None)  # none is None: checked above
    for X, y, pi, pl in ((X_tr, y_tr, paths[0], paths[1]), (X_te, y_te, paths[2], paths[3])):
        if X.ndim != 3:
            raise ValueError(f"{pi}: expected images of shape (n, H, W), got {X.shape}")
        if y.ndim != 1 or y.dtype.kind not in "iu":
            raise ValueError(
                f"{pl}: expected a 1-D array of integer labels, got {y.dtype} of shape {y.shape}"
            )
        if X.shape[0] != y.shape[0]:
            raise ValueError(f"{pi} has {X.shape[0]} images but {pl} has {y.shape[0]} labels")
        if y.size and int(y.min()) < 0:
            raise ValueError(f"{pl}: negative label {int(y.min())}")
    if X_tr.shape[1:] != X_te.shape[1:]:
        raise ValueError(f"{paths[0]} has {X_tr.shape[1:]} images but {paths[2]} has {X_te.shape[1:]}")
    n_labels = int(max(y_tr.max(initial=0), y_te.max(initial=0))) + 1
    source = "class_names"
    if class_names is None and (folder / "classes.txt").is_file():
        lines = (folder / "classes.txt").read_text(encoding="utf-8").splitlines()
        class_names = _check_class_names([ln.strip() for ln in lines if ln.strip()])
        source = str(folder / "classes.txt")
    if class_names is None:
        class_names = [str(k) for k in range(max(n_labels, 2))]
    elif len(class_names) < n_labels:
        raise ValueError(
            f"{source} names {len(class_names)} classes but the labels go up to {n_labels - 1}; "
            "give one name per class index"
        )
    max_value = 255.0 if X_tr.dtype == np.uint8 else 1.0
    return _images(
        name, X_tr, y_tr, X_te, y_te, max_value, class_names, random_state=random_state, max_train=max_train
    )


def _stem(path: Path) -> str:
    """``adult.csv.gz`` -> ``adult``; a folder -> its name."""
    if path.is_dir():
        return path.resolve().name
    name = path.name
    if name.lower().endswith(".gz"):
        name = name[:-3]
    return Path(name).stem


def _resolve_path(name_or_path: str | os.PathLike[str], data_dir: str | os.PathLike[str] | None) -> Path:
    """The existing file or folder ``name_or_path``: as given, else under ``data_dir``/``$SHAPNET_DATA``."""
    text = os.fspath(name_or_path)
    path = Path(text).expanduser()
    tried = [path]
    if not path.exists() and not path.is_absolute():
        base = (
            Path(data_dir).expanduser()
            if data_dir is not None
            else (Path(os.environ[ENV_VAR]).expanduser() if os.environ.get(ENV_VAR) else None)
        )
        if base is not None:
            tried.append(base / path)
    for candidate in tried:
        if candidate.exists():
            return candidate
    names = ", ".join(list_datasets())
    suffixes = [s.lower() for s in path.suffixes]
    looks_like_path = (
        isinstance(name_or_path, os.PathLike)
        or "/" in text
        or os.sep in text
        or any(s in suffixes for s in (*_TABLE_SUFFIXES, ".npz", ".gz"))
    )
    if looks_like_path:
        raise FileNotFoundError(
            f"no such file or folder: {' or '.join(repr(str(t)) for t in tried)}; expected a registry name "
            f"({names}) or the path of {_FORMATS}"
        )
    raise ValueError(
        f"Unknown dataset {text!r}; valid names: {names}; or give the path of {_FORMATS} "
        f"(no file or folder {text!r} exists)"
    )


def _from_registry(
    key: str,
    data_dir: str | os.PathLike[str] | None,
    *,
    label_column: str | None,
    task: Task | None,
    class_names: list[str] | None,
    test_size: float,
    random_state: int,
    max_train: int | None,
) -> Dataset:
    if label_column is not None:
        raise ValueError(
            f"label_column applies to .csv/.parquet tables; {key!r} is a registry dataset with a fixed target"
        )
    ds = DATASETS[key](data_dir, test_size=test_size, random_state=random_state, max_train=max_train)
    if task is not None and task != ds.task:
        raise ValueError(f"{key!r} is a {ds.task} dataset; task={task!r} does not apply")
    if class_names is not None:
        if ds.task != "classification":
            raise ValueError(f"{key!r} is a regression dataset; class_names does not apply")
        if len(class_names) != ds.n_classes:
            raise ValueError(
                f"{key!r} has {ds.n_classes} classes but {len(class_names)} class_names were given"
            )
        ds = dataclasses.replace(ds, class_names=class_names)
    return ds


def load_dataset(
    name_or_path: str | os.PathLike[str],
    data_dir: str | os.PathLike[str] | None = None,
    *,
    label_column: str | None = None,
    task: str | None = "auto",
    class_names: list[str] | None = None,
    test_size: float = 0.25,
    random_state: int = 0,
    max_train: int | None = None,
) -> Dataset:
    """Load a registry dataset by name, or your own data from a path, as a standardised :class:`Dataset`.

    ``name_or_path`` is either a registry name (:func:`list_datasets`,
    case-insensitive) or a path:

    * ``.csv``/``.tsv`` (optionally ``.gz``) or ``.parquet`` table with a header
      row: the target is ``label_column`` (default: the last column); the rest
      goes through :func:`from_frame` (numeric columns standardised,
      categorical ones one-hot encoded as ``col=value``, fitted on the train
      split). In CSV files empty cells, ``NA``, ``NaN`` and ``?`` are missing.
    * ``.npz``: arrays ``X``, ``y`` (split here) or ``X_train``, ``y_train``,
      ``X_test``, ``y_test``; optional string arrays ``feature_names`` and
      ``class_names``; through :func:`from_arrays`.
    * a folder of IDX files laid out like MNIST (any IDX image set), class
      names from ``class_names``, else the folder's ``classes.txt``.

    A relative path that does not exist from the working directory is looked
    up under ``data_dir`` (or ``$SHAPNET_DATA``). The dataset's ``name`` is the
    registry name or the file's stem (``data/houses.csv`` -> ``houses``).

    Args:
        name_or_path: Registry name or path (``str`` or ``os.PathLike``; a
            ``PathLike`` is always a path).
        data_dir: For ``yeast``, ``adult`` and ``mnist``: the data root
            (containing ``yeast/``, ``adult/``, ``mnist/``) or the dataset's own
            folder. Defaults to ``$SHAPNET_DATA``. Ignored by the scikit-learn
            bundled sets.
        label_column: Target column of a table (default: the last column).
        task: ``"auto"`` (default), ``"classification"`` or ``"regression"``; see
            :func:`from_arrays`. For a registry dataset it must match its task.
        class_names: Class labels in index order (overrides ``classes.txt`` or
            the registry's names; the count must match).
        test_size: Test fraction for sets without an official split
            (stratified for classification). Ignored by ``adult``, ``mnist``,
            IDX folders and ``.npz`` files with an explicit split.
        random_state: Seed for the split and for ``max_train`` subsampling.
        max_train: If given, keep a deterministic random subset of at most
            this many training rows (drawn after the split, before the
            standardisation statistics are fitted). The test set is unchanged.

    Returns:
        The :class:`Dataset`; ``X_*`` float32 of shape ``(n, d)`` or
        ``(n, C, H, W)``, ``y_*`` of shape ``(n,)``.

    Raises:
        ValueError: Unknown name; no ``data_dir`` and ``SHAPNET_DATA`` unset;
            unsupported or malformed file; options that do not apply.
        FileNotFoundError: A path or a required file is missing (the message
            names it and, for registry sets, where to download it).
        ImportError: pandas (tables) or pyarrow (Parquet) is not installed.
    """
    task_ = _check_task(task)
    names = _check_class_names(class_names)
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise TypeError(f"name_or_path must be a str or a path, got {type(name_or_path).__name__}")
    if isinstance(name_or_path, str) and name_or_path.strip().lower() in DATASETS:
        return _from_registry(
            name_or_path.strip().lower(),
            data_dir,
            label_column=label_column,
            task=task_,
            class_names=names,
            test_size=test_size,
            random_state=random_state,
            max_train=max_train,
        )
    path = _resolve_path(name_or_path, data_dir)
    name = _stem(path)
    if path.is_dir():
        kind = "idx"
    else:
        suffixes = [s.lower() for s in path.suffixes]
        last = suffixes[-2] if suffixes[-1:] == [".gz"] and len(suffixes) > 1 else (suffixes or [""])[-1]
        if last in _TABLE_SUFFIXES and not (last in (".parquet", ".pq") and suffixes[-1] == ".gz"):
            kind = "table"
        elif last == ".npz" and suffixes[-1] == ".npz":
            kind = "npz"
        else:
            got = "".join(path.suffixes) or "(none)"
            raise ValueError(f"{path}: unsupported file type {got}; expected {_FORMATS}")
    if label_column is not None and kind != "table":
        raise ValueError(f"label_column applies to .csv/.parquet tables, not to {path}")
    if kind == "table":
        df = _read_table(path)
        target = df.columns[-1] if label_column is None else label_column
        return from_frame(
            df,
            target,
            task=task_,
            name=name,
            class_names=names,
            test_size=test_size,
            random_state=random_state,
            max_train=max_train,
        )
    if kind == "npz":
        return _load_npz(
            path,
            task=task_,
            class_names=names,
            test_size=test_size,
            random_state=random_state,
            max_train=max_train,
            name=name,
        )
    return _load_idx_folder(
        path, task=task_, class_names=names, random_state=random_state, max_train=max_train, name=name
    )
