"""Dataset loaders for ShapNet experiments.

Every loader returns a :class:`Dataset`: a train/test split of float32 features,
already standardised with statistics fitted on the training split only, plus the
metadata (feature names, class names, image shape) that explanation code needs.

Two kinds of datasets are available:

* bundled with scikit-learn (no download): ``breast_cancer``, ``wine``,
  ``digits`` (8x8 images) and ``diabetes`` (regression);
* read from a data directory: ``yeast`` and ``adult`` (UCI) and ``mnist``.

The data directory is the ``data_dir`` argument of :func:`load_dataset`, or, when
that is ``None``, the environment variable ``SHAPNET_DATA``. It may be either the
data *root* (holding ``yeast/``, ``adult/`` and ``mnist/`` sub-folders) or the
dataset's own folder.

Example:
    >>> from shapnet.datasets import load_dataset
    >>> ds = load_dataset("wine", random_state=0)
    >>> ds.X_train.shape[1], ds.n_classes
    (13, 3)

Only numpy and scikit-learn are needed; nothing here imports torch.
"""

from __future__ import annotations

import gzip
import os
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

import numpy as np

__all__ = [
    "DATASETS",
    "Dataset",
    "ENV_VAR",
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
        name: Registry name of the dataset (e.g. ``"adult"``).
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
            Shape ``(d,)`` for tabular sets (0 for one-hot columns), ``(1,)``
            for image sets (a single global value in [0, 1] pixel units).
        scale: Standardisation divisor, same shape as ``mean`` (1 for one-hot
            and constant columns). Raw features are recovered as
            ``X * scale + mean`` (for images: pixel intensity in [0, 1]).
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
        class_names=None if regression else list(class_names),
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


def _find_files(
    name: str, data_dir: str | os.PathLike[str] | None, filenames: list[str]
) -> list[Path]:
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
        raise ValueError(
            f"Corrupt IDX file {path}: magic number {magic}, expected {expected_magic}"
        )
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


def load_dataset(
    name: str,
    data_dir: str | os.PathLike[str] | None = None,
    *,
    test_size: float = 0.25,
    random_state: int = 0,
    max_train: int | None = None,
) -> Dataset:
    """Load a dataset by name as a standardised train/test :class:`Dataset`.

    Args:
        name: One of :func:`list_datasets` (case-insensitive).
        data_dir: For ``yeast``, ``adult`` and ``mnist``: the data root
            (containing ``yeast/``, ``adult/``, ``mnist/``) or the dataset's own
            folder. Defaults to ``$SHAPNET_DATA``. Ignored by the scikit-learn
            bundled sets.
        test_size: Test fraction for sets without an official split
            (stratified for classification). Ignored by ``adult`` and ``mnist``,
            which use their official train/test files.
        random_state: Seed for the split and for ``max_train`` subsampling.
        max_train: If given, keep a deterministic random subset of at most
            this many training rows (drawn after the split, before the
            standardisation statistics are fitted). The test set is unchanged.

    Returns:
        The :class:`Dataset`; ``X_*`` float32 of shape ``(n, d)`` or
        ``(n, 1, H, W)``, ``y_*`` of shape ``(n,)``.

    Raises:
        ValueError: Unknown ``name``; no ``data_dir`` and ``SHAPNET_DATA`` unset;
            malformed or corrupt data file.
        FileNotFoundError: A required file is missing (the message names it
            and where to download it).
    """
    key = str(name).strip().lower()
    try:
        loader = DATASETS[key]
    except KeyError:
        raise ValueError(
            f"Unknown dataset {name!r}; valid names: {', '.join(list_datasets())}"
        ) from None
    return loader(data_dir, test_size=test_size, random_state=random_state, max_train=max_train)
