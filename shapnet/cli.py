"""Shared command-line plumbing: the dataset options and clean failure.

Every command that reads data (``python -m shapnet.training``, ``python -m
benchmarks roar|fidelity|faithfulness|accuracy|consistency``) uses the same
options, so a CSV, Parquet, ``.npz`` file or IDX image folder works everywhere::

    parser = argparse.ArgumentParser()
    add_dataset_arguments(parser)
    args = parser.parse_args()
    with fail_cleanly(args.out):
        data = dataset_from_args(args, random_state=args.seed)
        ...

:func:`fail_cleanly` turns a user error (unknown name, unreadable file, bad
option) into one line ``error: <message>`` on stderr, exit status 2 (as for
argparse's own usage errors), and removes the output folder if the run created
it, so a failed run leaves nothing on disk.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path
from types import TracebackType
from typing import Any

from .datasets import ENV_VAR, Dataset, list_datasets, load_dataset

__all__ = [
    "EXIT_USAGE",
    "add_dataset_arguments",
    "dataset_from_args",
    "fail_cleanly",
    "parse_class_names",
    "portable",
]

#: Exit status of a run that failed on bad input (argparse uses the same).
EXIT_USAGE = 2

#: Exceptions that mean "the user's input is wrong", reported as one line.
#: ImportError covers a missing optional dependency (e.g. pyarrow for Parquet).
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, TypeError, OSError, ImportError)


def add_dataset_arguments(parser: argparse.ArgumentParser, *, default: str | None = None) -> None:
    """Add ``--dataset``, ``--data-dir``, ``--label-column``, ``--task``, ``--class-names``.

    Args:
        parser: The command's parser (or an argument group).
        default: Default for ``--dataset``; without one the option is required.
    """
    names = ", ".join(list_datasets())
    parser.add_argument(
        "--dataset",
        required=default is None,
        default=default,
        metavar="NAME|PATH",
        help=f"a registry name ({names}) or a path: a .csv/.tsv/.parquet table with a header row, an .npz "
        "file (X, y or X_train, y_train, X_test, y_test) or a folder of IDX files laid out like MNIST"
        + (f" (default: {default})" if default else ""),
    )
    parser.add_argument(
        "--data-dir",
        default=None,
        metavar="DIR",
        help=f"folder of the registry's yeast/adult/mnist files, also searched for a relative --dataset "
        f"path (default: ${ENV_VAR})",
    )
    parser.add_argument(
        "--label-column",
        default=None,
        metavar="COLUMN",
        help="tables only: the target column (default: the last column)",
    )
    parser.add_argument(
        "--task",
        choices=("auto", "classification", "regression"),
        default="auto",
        help="auto: integer or string targets with at most 20 distinct values are classes, "
        "anything else is regression (default: auto)",
    )
    parser.add_argument(
        "--class-names",
        default=None,
        metavar="A,B,...|FILE",
        help="class labels in class-index order, comma-separated or a file with one per line "
        "(default: classes.txt in an IDX folder, else the sorted target values)",
    )


def parse_class_names(value: str | None) -> list[str] | None:
    """``--class-names`` as a list: a file with one name per line, or comma-separated names."""
    if value is None:
        return None
    path = Path(value).expanduser()
    if path.is_file():
        names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    else:
        names = [part.strip() for part in value.split(",")]
    if not names or any(not n for n in names):
        raise ValueError(
            f"--class-names: expected comma-separated non-empty names or a file of them, got {value!r}"
        )
    return names


def dataset_from_args(args: argparse.Namespace, **load_kwargs: Any) -> Dataset:
    """Load the dataset named by the options of :func:`add_dataset_arguments`.

    Args:
        args: Parsed arguments (options a parser lacks take their defaults).
        **load_kwargs: More arguments for :func:`shapnet.datasets.load_dataset`,
            e.g. ``random_state=args.seed, max_train=args.max_train``.
    """
    return load_dataset(
        args.dataset,
        getattr(args, "data_dir", None),
        label_column=getattr(args, "label_column", None),
        task=getattr(args, "task", None) or "auto",
        class_names=parse_class_names(getattr(args, "class_names", None)),
        **load_kwargs,
    )


class fail_cleanly:  # lower case: used like a function, ``with fail_cleanly(out):``
    """Context manager for a CLI's main body: user errors become one line and exit 2.

    On ValueError, TypeError, OSError (FileNotFoundError, PermissionError, ...)
    or ImportError it prints ``error: <message>`` (one line, no traceback) to
    stderr, deletes ``out_dir`` if it did not exist when the block was entered
    (then the parent folders created for it, while empty), and raises
    ``SystemExit(2)``. Other exceptions (bugs) propagate with their traceback,
    and ``out_dir`` is then kept for inspection; so is a folder that existed
    before (it may hold a resumable earlier run).

    Enter it before anything creates ``out_dir``. Also usable as a decorator.

    Args:
        out_dir: The run's output folder, or ``None`` if it writes none.
    """

    def __init__(self, out_dir: str | os.PathLike[str] | None = None) -> None:
        self.out_dir = None if out_dir is None else Path(out_dir)
        self._created: Path | None = None

    def __enter__(self) -> fail_cleanly:
        # The outermost folder of out_dir's path that does not exist yet: the run may create it
        # (mkdir(parents=True)), so a failure removes it too.
        self._created = None
        if self.out_dir is not None:
            path = self.out_dir.absolute()
            while not os.path.lexists(path) and path != path.parent:
                self._created, path = path, path.parent
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc is None or not isinstance(exc, USER_ERRORS):
            return
        if self._created is not None:
            self._remove_created()
        print(f"error: {_one_line(exc)}", file=sys.stderr, flush=True)
        raise SystemExit(EXIT_USAGE) from None

    def _remove_created(self) -> None:
        """Delete out_dir, then the parents created for it while they are empty.

        Only ``out_dir`` is removed with its contents: a parent may meanwhile hold another run's folder.
        """
        if self.out_dir is None or self._created is None:
            return
        out = self.out_dir.absolute()
        if out.is_dir() and not out.is_symlink():
            shutil.rmtree(out, ignore_errors=True)
        parent = out.parent
        while parent != self._created.parent and parent != parent.parent:
            try:
                parent.rmdir()
            except OSError:  # not empty (or already gone): keep it and everything above
                break
            parent = parent.parent

    def __call__(self, func: Any) -> Any:
        import functools

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with fail_cleanly(self.out_dir):
                return func(*args, **kwargs)

        return wrapper


def portable(value: Any) -> Any:
    """``value`` with the data folder written as ``$SHAPNET_DATA``, in every string it contains.

    Results and their commands are committed and shared: they must not carry the path of the machine that
    produced them. Dicts, lists and tuples are rewritten recursively; other values are returned as they are.
    """
    root = os.environ.get("SHAPNET_DATA", "").rstrip("/")
    if not root:
        return value
    if isinstance(value, str):
        return value.replace(root, "$SHAPNET_DATA")
    if isinstance(value, dict):
        return {k: portable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(portable(v) for v in value)
    return value


def _one_line(exc: BaseException) -> str:
    """The exception's message on one line (``OSError``: "strerror: filename")."""
    if isinstance(exc, OSError) and exc.strerror and exc.filename is not None:
        msg = f"{exc.strerror}: {exc.filename}"
    else:
        msg = str(exc)
    msg = " ".join(msg.split())
    return msg or type(exc).__name__
