"""Shared fixtures: every test is seeded; tiny float64 models where exactness is checked."""

from __future__ import annotations

import os
import random

import numpy as np
import pytest
import torch

os.environ.setdefault("MPLBACKEND", "Agg")
# Test tensors are tiny: one thread avoids OpenMP hand-off costs (and stalls when the machine is busy).
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed() -> None:
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)


@pytest.fixture
def idx_block_images(tmp_path):
    """A factory writing a tiny IDX image folder in MNIST's layout and returning its path.

    ``make(name, size, n_classes, n_train, n_test)``: ``size x size`` black images, each with one bright
    2x4 block whose row band is its class; uncompressed uint8 IDX files (type code 0x08).
    """
    import struct

    def write(path, array: np.ndarray) -> None:
        header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
        path.write_bytes(header + array.astype(np.uint8).tobytes())

    def make(name: str, size: int, n_classes: int, n_train: int, n_test: int):
        rng = np.random.default_rng(0)
        folder = tmp_path / name
        folder.mkdir()
        band = size // n_classes
        for split, n in (("train", n_train), ("t10k", n_test)):
            labels = np.arange(n) % n_classes
            images = np.zeros((n, size, size), dtype=np.uint8)
            for i, label in enumerate(labels):
                images[i, band * label : band * label + 2, 1:5] = rng.integers(128, 256, (2, 4))
            write(folder / f"{split}-images-idx3-ubyte", images)
            write(folder / f"{split}-labels-idx1-ubyte", labels)
        return folder

    return make
