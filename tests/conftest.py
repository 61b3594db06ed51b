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
