"""Dimension vocabulary used in every docstring of the package.

- ``B``: batch (samples).
- ``F``: features (players of the Shapley game). For images, ``F = H * W`` pixels.
- ``C``: channels per feature (a feature's vector in a Shapley representation).
- ``O``: outputs of a model or of a Shapley module (``K`` for a model's classes/targets).
- ``M``: Shapley modules in one layer.
- ``k``: features per module (group size); a module has ``2**k`` coalitions.
- ``N``: rows processed by a module (``B`` for tabular layers, ``B * windows`` for convolutions).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch

Activation = Literal["relu", "gelu", "tanh", "softplus", "silu"]
ArrayLike = torch.Tensor | np.ndarray

__all__ = ["Activation", "ArrayLike"]
