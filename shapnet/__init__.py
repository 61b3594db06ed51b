"""shapnet: Shapley Explanation Networks (Wang, Wang & Inouye, ICLR 2021) on current PyTorch.

Models whose forward pass computes the Shapley values of their own prediction.
"""

from . import datasets, regularizers
from .consistency import explanation_error, sample_kernel_coalitions, shapley_consistency
from .exact import exact_shapley
from .explanation import ShapleyExplanation
from .fastshap import FastSHAP
from .groups import butterfly_groups, disjoint_groups, gam_groups, pair_groups
from .harsanyi import HarsanyiNet, VisionHarsanyiNet
from .inputs import InputSpec
from .io import load, save
from .layers import ShapleyConv2d, ShapleyLayer
from .models import DeepShapNet, ShallowShapNet, ShapNet, Stage, VisionShapNet
from .modules import GroupedMLP
from .protocol import SelfExplaining, accepts_any_baseline, is_self_explaining
from .pruning import Pruning
from .targets import check_output_indices, output_indices

__version__ = "0.1.0"

__all__ = [
    "DeepShapNet",
    "FastSHAP",
    "GroupedMLP",
    "HarsanyiNet",
    "InputSpec",
    "Pruning",
    "SelfExplaining",
    "ShallowShapNet",
    "ShapNet",
    "ShapleyConv2d",
    "ShapleyExplanation",
    "ShapleyLayer",
    "Stage",
    "VisionHarsanyiNet",
    "VisionShapNet",
    "accepts_any_baseline",
    "butterfly_groups",
    "check_output_indices",
    "datasets",
    "disjoint_groups",
    "exact_shapley",
    "explanation_error",
    "gam_groups",
    "is_self_explaining",
    "load",
    "output_indices",
    "pair_groups",
    "regularizers",
    "sample_kernel_coalitions",
    "save",
    "shapley_consistency",
]
