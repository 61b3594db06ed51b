"""Shapley layers: a Shallow ShapNet as a layer (DESIGN §2) and the Shapley convolution (DESIGN §5).

Internally, tabular representations are kept *feature-major*, ``(F, B, C)``, so that gathering a layer's
groups is a single index along the first dimension and the result feeds a batched matmul without copies.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from ._validation import check_int, check_int_pair, check_positive_int
from .groups import GroupIndex
from .modules import GroupedMLP

__all__ = ["LayerOutput", "ShapleyConv2d", "ShapleyLayer", "normalize_groups", "watched"]


class LayerOutput(NamedTuple):
    """What a Shapley layer returns.

    Attributes:
        values: the representation ``Phi``: ``(B, F, O)`` for :class:`ShapleyLayer`, ``(B, O, H, W)`` for
            :class:`ShapleyConv2d`.
        base: ``(B, O)``: the sum of the modules' outputs at the reference.
        skipped: fraction of module evaluations skipped (pruned inputs).
    """

    values: torch.Tensor
    base: torch.Tensor
    skipped: float


def normalize_groups(groups: object, n_features: int | None = None) -> list[tuple[int, ...]]:
    """Validate ``groups`` (a sequence of index sequences) and return it as a list of int tuples."""
    if isinstance(groups, torch.Tensor):
        groups = groups.tolist()
    if isinstance(groups, (str, bytes)) or not isinstance(groups, Sequence) or len(groups) == 0:
        raise TypeError(f"groups must be a non-empty sequence of index tuples, got {groups!r}.")
    out = []
    for g in groups:
        if isinstance(g, (int,)) or not isinstance(g, (Sequence, torch.Tensor)) or len(g) == 0:
            raise TypeError(f"each group must be a non-empty sequence of feature indices, got {g!r}.")
        if isinstance(g, torch.Tensor):
            g = g.tolist()
        # Integers only: int(1.5) would silently truncate a group to another feature.
        idx = tuple(check_int(i, f"group {tuple(g)!r}: index", min_val=0) for i in g)
        if len(set(idx)) != len(idx):
            raise ValueError(f"a group may not repeat a feature, got {idx}.")
        if min(idx) < 0 or (n_features is not None and max(idx) >= n_features):
            raise ValueError(f"group {idx} has an index outside [0, {n_features}).")
        out.append(idx)
    return out


class ShapleyLayer(nn.Module):
    """One layer of ``M`` Shapley modules on feature groups, run as batched matmuls.

    Module ``m`` sees the features ``groups[m]`` (``k = len(groups[m])``; shorter groups are padded with a
    constant slot) and has its own inner MLP, or one shared MLP with ``shared=True``. The output
    representation is ``Phi_i = sum over modules m containing i of phi_i^(m)``; it is exactly the Shapley
    value of ``g(x) = sum_m f_m(x_{G_m})`` at ``x`` relative to the reference, for every output channel.

    Args:
        groups: ``M`` index tuples.
        in_channels: ``C_in`` per feature.
        out_channels: ``O`` per feature.
        hidden: hidden widths of each inner MLP.
        activation: inner activation.
        shared: one inner function for all modules (all groups must have the same size).
        n_features: ``F``; defaults to ``max(index) + 1``.
        bias: give the modules' outputs a bias (it only moves ``base``, never ``values``).

    Shape:
        input ``(B, F, C_in)``; output ``values (B, F, O)``, ``base (B, O)``.
    """

    def __init__(
        self,
        groups: Sequence[Sequence[int]],
        in_channels: int,
        out_channels: int,
        *,
        hidden: Sequence[int] = (64,),
        activation: str = "relu",
        shared: bool = False,
        n_features: int | None = None,
        bias: bool = True,
    ) -> None:
        super().__init__()
        check_positive_int(in_channels, "in_channels")
        check_positive_int(out_channels, "out_channels")
        if n_features is not None:
            check_positive_int(n_features, "n_features")
        group_list = normalize_groups(groups, n_features)
        self.n_features = n_features if n_features is not None else max(max(g) for g in group_list) + 1
        k = max(len(g) for g in group_list)
        if shared and any(len(g) != k for g in group_list):
            raise ValueError("shared=True needs groups of equal size.")
        # Which features each module reads; short groups point their spare slots at a constant slot F.
        self.index = GroupIndex(group_list, self.n_features)
        self.in_channels, self.out_channels, self.shared = in_channels, out_channels, shared
        self.mlp = GroupedMLP(
            1 if shared else len(group_list),
            k,
            in_channels,
            out_channels,
            hidden=hidden,
            activation=activation,
            readout_bias=bias,
        )

    @property
    def groups(self) -> torch.Tensor:
        """``(M, k)`` long: module ``m``'s features (``F`` marks a padding slot)."""
        return self.index.groups

    @property
    def n_modules(self) -> int:
        return self.index.groups.shape[0]

    @property
    def group_size(self) -> int:
        return self.index.groups.shape[1]

    def extra_repr(self) -> str:
        return (
            f"n_features={self.n_features}, n_modules={self.n_modules}, group_size={self.group_size}, "
            f"in_channels={self.in_channels}, out_channels={self.out_channels}, shared={self.shared}"
        )

    def forward_features(
        self, delta: torch.Tensor, reference: torch.Tensor | None = None, *, sparse: bool = False
    ) -> LayerOutput:
        """The layer on a feature-major input.

        Args:
            delta: ``(F, B, C_in)``, input minus reference.
            reference: ``(F, C_in)`` or per-row ``(F, B, C_in)``; None means zero.
            sparse: report the fraction of modules skipped because their inputs are all at the reference
                (dynamic pruning).

        Returns:
            ``values (F, B, O)`` (feature-major) and ``base (B or 1, O)``.
        """
        ref = None if reference is None else self.index.gather(reference)
        offset = self.mlp.offset(ref)
        result = self.mlp.shapley(delta, offset, self.index, sparse=sparse)
        return LayerOutput(result.values, result.base.sum(0), result.skipped)

    def forward_sum(
        self, delta: torch.Tensor, reference: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``sum_i Phi_i`` and ``base`` without the values, for a prediction.

        By efficiency ``sum_i Phi_i = g(x) - g(r) = sum_m f_m(x) - f_m(r)``: one coalition per module
        instead of ``2**k``, and no Shapley mix.

        Args:
            delta: ``(F, B, C_in)``, input minus reference.
            reference: as in :meth:`forward_features`.

        Returns:
            ``(B, O)`` and ``(B or 1, O)``.
        """
        ref = None if reference is None else self.index.gather(reference)
        offset = self.mlp.offset(ref)
        outputs = self.mlp.outputs(self.index.gather(delta), offset)  # (M, B, O)
        base = self.mlp.base(offset)  # (M, 1 or B, O)
        return (outputs - base).sum(0), base.sum(0)

    def shapley(self, x: torch.Tensor, reference: torch.Tensor | None = None) -> LayerOutput:
        """Shapley representation of ``x`` and the base.

        Args:
            x: ``(B, F, C_in)``.
            reference: ``(F, C_in)`` or ``(B, F, C_in)``; None means zero.

        Returns:
            :class:`LayerOutput` with ``values (B, F, O)`` and ``base (B, O)``.
        """
        if x.dim() != 3 or x.shape[1] != self.n_features or x.shape[2] != self.in_channels:
            raise ValueError(
                f"x must have shape (B, {self.n_features}, {self.in_channels}), got {tuple(x.shape)}."
            )
        x_fm = x.transpose(0, 1)
        if reference is None:
            delta, ref = x_fm, None
        else:
            ref = reference.transpose(0, 1) if reference.dim() == 3 else reference
            delta = x_fm - (ref if ref.dim() == 3 else ref.unsqueeze(1))
        out = self.forward_features(delta, ref)
        return LayerOutput(out.values.transpose(0, 1), out.base.expand(x.shape[0], -1), out.skipped)

    def forward(self, x: torch.Tensor, reference: torch.Tensor | None = None) -> torch.Tensor:
        """The representation ``Phi`` of ``x``, ``(B, F, O)``: a plain tensor, so forward hooks (Captum's
        layer methods, Quantus' representation metrics) see it. :meth:`shapley` also returns the base.

        Args:
            x: ``(B, F, C_in)``.
            reference: ``(F, C_in)`` or ``(B, F, C_in)``; None means zero.
        """
        return self.shapley(x, reference).values


class ShapleyConv2d(nn.Module):
    """Shapley convolution: one shared Shapley module on every ``kh x kw`` window (DESIGN §5).

    Features are pixels (each a vector of ``C_in`` channels); a window of ``k = kh * kw`` pixels is one
    module with ``2**k`` coalitions. Windows are placed like ``nn.Conv2d`` (``kernel_size``, ``stride``,
    ``padding``, ``dilation``) and the per-pixel Shapley vectors of overlapping windows are summed back on
    the input grid (unfold -> module -> fold), so the output stays ``(B, O, H, W)``.

    Shape:
        input ``(B, C_in, H, W)`` (as input minus reference); output ``(B, O, H, W)``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int] = 2,
        *,
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] = 0,
        dilation: int | tuple[int, int] = 1,
        hidden: Sequence[int] = (32,),
        activation: str = "relu",
        bias: bool = True,
    ) -> None:
        super().__init__()
        self.in_channels = check_positive_int(in_channels, "in_channels")
        self.out_channels = check_positive_int(out_channels, "out_channels")
        self.kernel_size = check_int_pair(kernel_size, "kernel_size", min_val=1)
        self.stride = check_int_pair(stride, "stride", min_val=1)
        self.padding = check_int_pair(padding, "padding", min_val=0)
        self.dilation = check_int_pair(dilation, "dilation", min_val=1)
        k = self.kernel_size[0] * self.kernel_size[1]
        self.mlp = GroupedMLP(
            1, k, in_channels, out_channels, hidden=hidden, activation=activation, readout_bias=bias
        )
        self.index = GroupIndex.tiles(k, 1)  # one shared module: a window's k pixels are features 0..k-1

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
            f"padding={self.padding}, dilation={self.dilation}, hidden={self.mlp.hidden}"
        )

    def _unfold(self, t: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` -> ``(k, B*L, C)``: each window's pixels as the ``k`` features of one row."""
        b, c = t.shape[:2]
        cols = F.unfold(t, self.kernel_size, self.dilation, self.padding, self.stride)  # (B, C*k, L)
        k = self.mlp.group_size
        return cols.view(b, c, k, -1).permute(2, 0, 3, 1).reshape(k, -1, c)

    def shapley(
        self, delta: torch.Tensor, reference: torch.Tensor | None = None, *, sparse: bool = False
    ) -> LayerOutput:
        """The Shapley representation and the base.

        Args:
            delta: ``(B, C_in, H, W)``: input minus reference.
            reference: ``(C_in, H, W)`` or None (zero).
            sparse: skip coalitions of pixels at the reference.

        Returns:
            :class:`LayerOutput` with ``values (B, O, H, W)`` and ``base (B, O)``.
        """
        b, _, h, w = delta.shape
        if b == 0:  # an empty batch has no windows to unfold
            return LayerOutput(
                delta.new_zeros(0, self.out_channels, h, w), delta.new_zeros(0, self.out_channels), 0.0
            )
        if reference is None:
            offset = self.mlp.offset(None)
        else:
            ref_rows = self._unfold(reference.unsqueeze(0))  # (k, L, C)
            offset = self.mlp.offset(self.index.gather(ref_rows))  # (1, L, h)
            offset = offset.expand(b, -1, -1).reshape(1, -1, offset.shape[-1])  # (1, B*L, h)
        result = self.mlp.shapley(self._unfold(delta), offset, self.index, sparse=sparse)
        k, out = self.mlp.group_size, result.values.shape[-1]
        phi = result.values.view(k, b, -1, out).permute(1, 3, 0, 2).reshape(b, out * k, -1)  # (B, O*k, L)
        values = F.fold(phi, (h, w), self.kernel_size, self.dilation, self.padding, self.stride)
        n_windows = phi.shape[-1]
        base = result.base.view(-1, out)
        base = base.expand(b * n_windows, out) if base.shape[0] == 1 else base
        return LayerOutput(values, base.view(b, n_windows, out).sum(1), result.skipped)

    def forward(
        self, delta: torch.Tensor, reference: torch.Tensor | None = None, *, sparse: bool = False
    ) -> torch.Tensor:
        """The representation ``Phi``, ``(B, O, H, W)``: a plain tensor, so forward hooks (Captum's layer
        methods, Quantus' representation metrics) see it. :meth:`shapley` also returns the base.

        Args: as in :meth:`shapley`.
        """
        return self.shapley(delta, reference, sparse=sparse).values


def watched(module: nn.Module) -> bool:
    """Whether forward hooks or pre-hooks are registered on ``module`` (e.g. by Captum's layer methods).

    The models run their layers through internal fast paths (feature-major, no ``__call__``); for a watched
    layer they call the module itself, batch-first, so its hooks see its output and may replace it.
    """
    return bool(module._forward_hooks or module._forward_pre_hooks)
