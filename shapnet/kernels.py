"""Compiled CPU kernels (numba) for layers of one-hidden-layer ReLU Shapley modules, and for pruning.

The PyTorch tiles (:class:`shapnet._backends.torch_tiles.ReluModules`) run every cache tile as about ten
torch calls dispatched from Python, and prune by gathering each tile's busy rows. These kernels do the same
maths (DESIGN §7) in one compiled call per layer: for every module they collect the rows with at least one
active feature and run them in chunks that stay in cache, with the linear maps as BLAS matmuls and the
coalitions, ReLU and Shapley mix as compiled loops. Idle rows, whose features are all at the reference, cost
a scan and nothing else, so the time of a pruned layer follows its busy rows (docs/guide/performance.md).
The kernels read a layer's input and write its output *feature-major*, through each module's feature
indices, so that gathering the groups and scattering the values back cost no copies.

Arrays are NumPy views of C-contiguous CPU tensors, float32 or float64:

- ``delta (F, N, C)``: each feature's input minus its reference, for ``N`` rows;
- ``slots (k, M)``: module ``m``'s ``j``-th feature; ``F`` marks a padding slot, whose input is 0;
- ``active (F, N)`` bool: the features whose ``delta`` is non-zero; with size 0 the kernels work it out;
- ``w1 (k, Mw, C, h)``, ``offset (Mo, No, h)``, ``w_out (Mw, h, O)``, ``weights_t (k, 2**k)``: as in
  :class:`~shapnet._backends.torch_tiles.ReluModules`; ``Mw``/``Mo`` are 1 when the weights or the offset
  are shared by all modules, ``No`` is 1 when the offset is shared by all rows;
- ``out (F, N, O)``: every feature's Shapley value summed over the modules that contain it.

``numba`` is a dependency of this package (and of ``shap``); on other devices, and for other dtypes,
:class:`~shapnet._backends.torch_tiles.ReluModules` runs the same maths as PyTorch ops.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator
from typing import TypeVar

import numpy as np
import torch
from numba import njit

__all__ = ["applies", "disabled", "prune_units", "relu_modules_backward", "relu_modules_forward"]


_ENABLED = True


def applies(tensor: torch.Tensor) -> bool:
    """Whether the compiled kernels run on ``tensor``: CPU memory (NumPy views), float32 or float64, and
    not turned off by :func:`disabled`."""
    return _ENABLED and tensor.device.type == "cpu" and tensor.dtype in (torch.float32, torch.float64)


@contextlib.contextmanager
def disabled() -> Iterator[None]:
    """Run everything on the PyTorch backends inside this block (to compare speed, or to debug).

    Example::

        with shapnet.kernels.disabled():
            model.explain(x)  # the fused PyTorch tiles, as on a GPU
    """
    global _ENABLED
    before, _ENABLED = _ENABLED, False
    try:
        yield
    finally:
        _ENABLED = before


_CACHE_WARNED = False

_Result = TypeVar("_Result")


def _compiled(
    fastmath: bool | set[str] = False,
) -> Callable[[Callable[..., _Result]], Callable[..., _Result]]:
    """``numba.njit(cache=True, nogil=True, fastmath=fastmath)``, or an in-memory compilation when numba
    finds no writable cache directory (read-only site-packages, no writable home or ``NUMBA_CACHE_DIR``):
    the kernels then compile once per process instead of failing the import, with one warning."""

    # Typed as a function of any arguments: a numba Dispatcher checks its arguments when it compiles them, the
    # callers use nothing of it but its call, and they pass the kernels' many arrays as unpacked lists.
    def wrap(fn: Callable[..., _Result]) -> Callable[..., _Result]:
        global _CACHE_WARNED
        try:
            return njit(cache=True, nogil=True, fastmath=fastmath)(fn)
        except RuntimeError as err:  # numba: "cannot cache function ...: no locator available"
            if not _CACHE_WARNED:
                _CACHE_WARNED = True
                warnings.warn(
                    f"shapnet: numba cannot cache the compiled kernels ({err}); they are compiled in memory "
                    "on first use in every process (10-20 s). Set NUMBA_CACHE_DIR to a writable directory "
                    "to keep them.",
                    RuntimeWarning,
                    stacklevel=2,
                )
            return njit(cache=False, nogil=True, fastmath=fastmath)(fn)

    return wrap


# Rows of one module processed together: the (k, rows, h) buffers stay in cache, and the matmuls are large
# enough for BLAS to run near its peak. A chunk's buffers take about _CHUNK_BYTES: the forward pass keeps
# the projections and the mixed rows, the backward pass all 2**k coalitions. Every buffer is allocated once
# per call and every matmul writes into one: a fresh large array per matmul would come from mmap, and its
# page faults would cost more than the matmul.
_CHUNK = 256
_CHUNK_BYTES = 1 << 18
# Up to this many units per sample, pruning ranks them by pairwise comparisons rather than by sorting.
_RANK_BY_COMPARISON = 128


@_compiled()
def _add(total, term):  # pragma: no cover - compiled
    """``total += term`` for 2-D arrays, without the temporary that slice arithmetic allocates."""
    for a in range(total.shape[0]):
        for b in range(total.shape[1]):
            total[a, b] += term[a, b]


@_compiled()
def _balanced(n_busy, chunk):  # pragma: no cover - compiled
    """Rows per chunk to split ``n_busy`` rows into chunks of at most ``chunk`` and near-equal size (a short
    remainder chunk would cost a round of small matmuls)."""
    n_chunks = max(1, -(-n_busy // chunk))
    return max(1, -(-n_busy // n_chunks))


@_compiled()
def _module_rows(delta, slots, active, m, act, rows, start, stop):  # pragma: no cover - compiled
    """Module ``m``'s active slots into ``act (k, N)`` and its busy rows (some slot active) into ``rows``,
    for the rows ``start <= n < stop``.

    Returns the number of busy rows.
    """
    n_features, _, channels = delta.shape
    k = slots.shape[0]
    given = active.size > 0
    for j in range(k):
        f = slots[j, m]
        for n in range(start, stop):
            if f >= n_features:  # a padding slot: always at the reference
                act[j, n] = False
            elif given:
                act[j, n] = active[f, n]
            else:
                nonzero = False
                for c in range(channels):
                    nonzero |= delta[f, n, c] != 0.0
                act[j, n] = nonzero
    count = 0
    for n in range(start, stop):
        for j in range(k):
            if act[j, n]:
                rows[count] = n
                count += 1
                break
    return count


@_compiled()
def _project(delta, slots, w1, j, m, mw, rows, start, width, d_buf, proj):  # pragma: no cover - compiled
    """``proj[j, :width] = delta[slots[j, m], rows[start : start + width]] @ w1[j, mw]`` (rows to d_buf)."""
    f = slots[j, m]
    if f >= delta.shape[0]:
        d_buf[j, :width] = 0.0
    else:
        for r in range(width):
            d_buf[j, r, :] = delta[f, rows[start + r], :]
    if delta.shape[2] == 1:  # an outer product: BLAS is slower than a loop here
        weight = w1[j, mw, 0]
        for r in range(width):
            v = d_buf[j, r, 0]
            for i in range(weight.shape[0]):
                proj[j, r, i] = v * weight[i]
    else:
        np.dot(d_buf[j, :width], w1[j, mw], proj[j, :width])


@_compiled()
def relu_modules_forward(
    delta,
    slots,
    w1,
    offset,
    w_out,
    active,
    weights_t,
    out,
    accumulate,
    norms,
    threshold,
    active_out,
    row_start,
    row_stop,
):  # pragma: no cover - compiled
    """Shapley values ``out (F, N, O)`` of the rows ``row_start <= n < row_stop``; returns the number of busy
    (module, row) pairs among them. Calls on disjoint row ranges write disjoint parts of ``out`` and
    ``norms``, so they may run in parallel threads (the kernels release the GIL).

    Idle rows and inactive features (dummy players) get exactly 0. With ``accumulate`` the values are added
    to ``out`` (a residual connection) instead of overwriting it; ``out`` may then be ``delta`` itself when
    the slots partition the features, since each module reads its rows before it writes them. Unless it has
    size 0, ``norms (F, N)`` receives every feature's L1 norm of ``out``, computed while the module's rows
    are in cache (partitions only: each feature must belong to exactly one module).

    Unless it has size 0, ``active_out (F, N)`` receives the mask that threshold pruning would return
    (:func:`prune_units` with ``n_prune = 0``): a feature of ``out`` whose L1 norm, in float32, is below
    ``threshold`` is set to 0, and ``active_out`` marks the features left non-zero. The pruning then costs
    no pass of its own (partitions only, as ``norms``; the norms written are those after pruning).
    """
    _, n_rows, c_in = delta.shape
    k, n_modules = slots.shape
    h = w1.shape[3]
    n_coalitions = 1 << k
    span = row_stop - row_start
    chunk = max(1, min(_CHUNK, span, max(16, _CHUNK_BYTES // (2 * k * h * delta.itemsize))))
    act = np.empty((k, n_rows), np.bool_)
    rows = np.empty(span, np.int64)
    d_buf = np.empty((k, chunk, c_in), delta.dtype)
    proj = np.empty((k, chunk, h), delta.dtype)
    mixed = np.empty((k, chunk, h), delta.dtype)
    pre = np.empty((n_coalitions, h), delta.dtype)
    phi_buf = np.empty((chunk, w_out.shape[2]), delta.dtype)
    if not accumulate:
        out[:, row_start:row_stop] = 0.0
    if norms.size > 0:
        norms[:, row_start:row_stop] = 0.0
    prune = active_out.size > 0
    if prune:
        active_out[:, row_start:row_stop] = False  # idle modules' features stay 0: inactive
    total_busy = 0
    for m in range(n_modules):
        mw = 0 if w1.shape[1] == 1 else m
        mo = 0 if offset.shape[0] == 1 else m
        n_busy = _module_rows(delta, slots, active, m, act, rows, row_start, row_stop)
        total_busy += n_busy
        step = _balanced(n_busy, chunk)
        for start in range(0, n_busy, step):
            width = min(step, n_busy - start)
            for j in range(k):
                _project(delta, slots, w1, j, m, mw, rows, start, width, d_buf, proj)
            # Coalitions, ReLU and mix row by row: a row's (2**k, h) pre-activations stay in L1.
            mixed[:, :width] = 0.0
            for r in range(width):
                pre[0, :] = offset[mo, 0 if offset.shape[1] == 1 else rows[start + r]]
                for s in range(1, n_coalitions):
                    low = s & -s  # S = (S without its lowest player) + that player
                    j = 0
                    while (1 << j) != low:
                        j += 1
                    prev = s ^ low
                    for i in range(h):
                        pre[s, i] = pre[prev, i] + proj[j, r, i]
                for s in range(n_coalitions):
                    for i in range(h):
                        pre[s, i] = max(pre[s, i], 0.0)
                    for j in range(k):
                        weight = weights_t[j, s]
                        for i in range(h):
                            mixed[j, r, i] += weight * pre[s, i]
            for j in range(k):
                # The readout is linear, so it applies to the k mixed rows (DESIGN §7).
                phi = np.dot(mixed[j, :width], w_out[mw], phi_buf[:width])
                f = slots[j, m]
                for r in range(width):
                    n = rows[start + r]
                    if act[j, n]:  # a dummy player's value is exactly 0 (missingness)
                        for o in range(phi.shape[1]):  # explicit loops: slice arithmetic would allocate
                            out[f, n, o] += phi[r, o]
        if norms.size > 0 or prune:
            # Only the busy rows: an idle module's features are 0 in its input and get no values, so their
            # norms stay the 0 written above; a pass over every row would cost as much as a sparse layer.
            for j in range(k):
                f = slots[j, m]
                if f < out.shape[0]:
                    for r in range(n_busy):
                        n = rows[r]
                        total = 0.0
                        for o in range(out.shape[2]):
                            total += abs(out[f, n, o])
                        if prune:
                            # Compared in float32, as prune_units ranks (so both paths prune the same).
                            if np.float32(total) < threshold:
                                for o in range(out.shape[2]):
                                    out[f, n, o] = 0.0
                                total = 0.0
                            active_out[f, n] = total != 0.0
                        if norms.size > 0:
                            norms[f, n] = total
    return total_busy


@_compiled()
def relu_modules_backward(
    delta,
    slots,
    w1,
    offset,
    w_out,
    active,
    weights_t,
    masks_and_ones,
    grad,
    grad_delta,
    grad_w1,
    grad_offset,
    grad_w_out,
    row_start,
    row_stop,
):  # pragma: no cover - compiled
    """Gradients of :func:`relu_modules_forward` for ``grad (F, N, O)``, accumulated in place, from the rows
    ``row_start <= n < row_stop``. Calls on disjoint row ranges write disjoint rows of ``grad_delta`` (and of
    a per-row ``grad_offset``); in parallel, each needs its own weight gradients.

    ``masks_and_ones (k + 1, 2**k)``: the coalition masks and a row of ones (one matmul gives the projections'
    and the offset's gradients). The gradient arrays must start at zero; one of size 0 is not computed.
    Idle rows and inactive features contribute nothing, as in the forward pass (their values are constant 0).
    """
    n_features, n_rows, c_in = delta.shape
    k, n_modules = slots.shape
    h, n_out = w1.shape[3], w_out.shape[2]
    n_coalitions = 1 << k
    span = row_stop - row_start
    chunk = max(1, min(_CHUNK, span, max(16, _CHUNK_BYTES // (n_coalitions * h * delta.itemsize))))
    need_delta, need_w1 = grad_delta.size > 0, grad_w1.size > 0
    need_offset, need_w_out = grad_offset.size > 0, grad_w_out.size > 0
    weights = np.ascontiguousarray(weights_t.T)
    act = np.empty((k, n_rows), np.bool_)
    rows = np.empty(span, np.int64)
    d_buf = np.empty((k, chunk, c_in), delta.dtype)
    proj = np.empty((k, chunk, h), delta.dtype)
    g = np.empty((k, chunk, n_out), delta.dtype)
    pre_flat = np.empty(n_coalitions * chunk * h, delta.dtype)
    grad_mixed_flat = np.empty(k * chunk * h, delta.dtype)
    grad_pre_flat = np.empty(n_coalitions * chunk * h, delta.dtype)
    mixed_flat = np.empty(k * chunk * h, delta.dtype)
    both_flat = np.empty((k + 1) * chunk * h, delta.dtype)
    grad_w_out_buf = np.empty((h, n_out), delta.dtype)
    grad_w1_buf = np.empty((c_in, h), delta.dtype)
    grad_d_buf = np.empty((chunk, c_in), delta.dtype)
    for m in range(n_modules):
        mw = 0 if w1.shape[1] == 1 else m
        mo = 0 if offset.shape[0] == 1 else m
        n_busy = _module_rows(delta, slots, active, m, act, rows, row_start, row_stop)
        w_out_t = np.ascontiguousarray(w_out[mw].T)
        w1_t = np.ascontiguousarray(w1[:, mw].transpose(0, 2, 1))  # (k, h, C)
        step = _balanced(n_busy, chunk)
        for start in range(0, n_busy, step):
            width = min(step, n_busy - start)
            grad_mixed = grad_mixed_flat[: k * width * h].reshape(k, width * h)
            for j in range(k):
                _project(delta, slots, w1, j, m, mw, rows, start, width, d_buf, proj)
                f = slots[j, m]
                for r in range(width):
                    n = rows[start + r]
                    if act[j, n]:
                        g[j, r, :] = grad[f, n, :]
                    else:
                        g[j, r, :] = 0.0
                np.dot(g[j, :width], w_out_t, grad_mixed[j].reshape(width, h))
            pre = pre_flat[: n_coalitions * width * h].reshape(n_coalitions, width, h)
            for r in range(width):
                pre[0, r, :] = offset[mo, 0 if offset.shape[1] == 1 else rows[start + r]]
            for s in range(1, n_coalitions):
                low = s & -s
                j = 0
                while (1 << j) != low:
                    j += 1
                prev = s ^ low
                for r in range(width):
                    for i in range(h):
                        pre[s, r, i] = pre[prev, r, i] + proj[j, r, i]
            z = pre.reshape(n_coalitions, width * h)
            grad_pre = np.dot(
                weights, grad_mixed, grad_pre_flat[: n_coalitions * width * h].reshape(n_coalitions, -1)
            )
            for s in range(n_coalitions):  # relu' and relu, in one pass
                for i in range(width * h):
                    if z[s, i] <= 0.0:
                        z[s, i] = 0.0
                        grad_pre[s, i] = 0.0
            if need_w_out:
                mixed = np.dot(
                    weights_t, z, mixed_flat[: k * width * h].reshape(k, -1)
                )  # the forward mix, recomputed
                for j in range(k):
                    _add(grad_w_out[mw], np.dot(mixed[j].reshape(width, h).T, g[j, :width], grad_w_out_buf))
            both = np.dot(masks_and_ones, grad_pre, both_flat[: (k + 1) * width * h].reshape(k + 1, -1))
            if need_offset:
                grad_off = both[k].reshape(width, h)
                for r in range(width):
                    row = 0 if offset.shape[1] == 1 else rows[start + r]
                    for i in range(h):
                        grad_offset[mo, row, i] += grad_off[r, i]
            for j in range(k):
                grad_proj = both[j].reshape(width, h)
                if need_w1:
                    if c_in == 1:
                        for r in range(width):
                            v = d_buf[j, r, 0]
                            for i in range(h):
                                grad_w1[j, mw, 0, i] += v * grad_proj[r, i]
                    else:
                        _add(grad_w1[j, mw], np.dot(d_buf[j, :width].T, grad_proj, grad_w1_buf))
                f = slots[j, m]
                if need_delta and f < n_features:
                    grad_d = np.dot(grad_proj, w1_t[j], grad_d_buf[:width])
                    for r in range(width):
                        n = rows[start + r]
                        for c in range(c_in):
                            grad_delta[f, n, c] += grad_d[r, c]


# Reassociating the L1 sums lets them vectorise; a sum of |x| is 0 exactly when every x is, in any order.
@_compiled(fastmath={"reassoc", "nsz"})
def prune_units(
    representation,
    units,
    n_prune,
    threshold,
    keep,
    active,
    out,
    in_place,
    given_norms,
    sample_start,
    sample_stop,
):  # pragma: no cover - compiled
    """Zero the weakest units of every sample of a feature-major ``representation (F, B, C)``.

    ``units (U, g)``: the features of each unit; a unit's strength is its members' mean L1 norm. Per sample,
    the ``n_prune`` weakest units (ties: the lower index) and those weaker than ``threshold`` are pruned.
    Writes ``keep (F, B)`` (features not pruned), ``active (F, B)`` (kept and non-zero) and, unless it has
    size 0, ``out (F, B, C)``, the representation with the pruned features set to 0; ``in_place`` says that
    ``out`` is ``representation``, so only the pruned features are written. ``given_norms (F, B)``, unless it
    has size 0, holds the features' L1 norms already (the layer kernel computes them while they are in cache).
    Only the samples ``sample_start <= b < sample_stop`` are pruned (and written): calls on disjoint ranges
    may run in parallel threads.
    """
    n_features, _, channels = representation.shape
    n_units, size = units.shape
    # Samples go in blocks that keep the scratch arrays small; every loop runs over a block's samples
    # innermost, on contiguous rows, so it vectorises. Strengths are ranked in float32, as torch's top-k does.
    block = 64
    norms = np.empty((n_features, block), np.float64)
    strength = np.empty((n_units, block), np.float32)
    rank = np.empty((n_units, block), np.int32)
    for b0 in range(sample_start, sample_stop, block):
        width = min(block, sample_stop - b0)
        if given_norms.size > 0:
            norms[:, :width] = given_norms[:, b0 : b0 + width]
        else:
            for f in range(n_features):
                for b in range(width):
                    total = 0.0
                    for c in range(channels):
                        total += abs(representation[f, b0 + b, c])
                    norms[f, b] = total
        for u in range(n_units):
            for b in range(width):
                strength[u, b] = 0.0
            for i in range(size):
                f = units[u, i]
                for b in range(width):
                    strength[u, b] += norms[f, b]
            for b in range(width):
                strength[u, b] /= size
        # Each unit's rank by strength within its sample (ties: the lower index first). For a few dozen units,
        # n_units**2 branch-free, vectorised comparisons beat sorting; for many (pixels), a stable sort wins.
        rank[:] = 0
        if n_prune > 0 and n_units > _RANK_BY_COMPARISON:
            column = np.empty(n_units, np.float32)
            for b in range(width):
                column[:] = strength[:, b]
                order = np.argsort(column, kind="mergesort")
                for position in range(n_units):
                    rank[order[position], b] = position
        elif n_prune > 0:
            for u in range(n_units):
                for v in range(n_units):
                    if v < u:
                        for b in range(width):
                            rank[u, b] += strength[v, b] <= strength[u, b]
                    elif v > u:
                        for b in range(width):
                            rank[u, b] += strength[v, b] < strength[u, b]
        keep[:, b0 : b0 + width] = True
        for u in range(n_units):
            for i in range(size):
                f = units[u, i]
                for b in range(width):
                    if rank[u, b] < n_prune or strength[u, b] < threshold:
                        keep[f, b0 + b] = False
        # The block's samples are decided: write the mask and the output while their rows are in cache.
        for f in range(n_features):
            for b in range(width):
                kept = keep[f, b0 + b]
                active[f, b0 + b] = kept and norms[f, b] != 0.0
                if out.size == 0:
                    continue
                if not kept:
                    if in_place and norms[f, b] == 0.0:
                        continue  # already all 0 (a sum of |x| is 0 only then): idle features cost no pass
                    for c in range(channels):
                        out[f, b0 + b, c] = 0.0
                elif not in_place:
                    for c in range(channels):
                        out[f, b0 + b, c] = representation[f, b0 + b, c]
