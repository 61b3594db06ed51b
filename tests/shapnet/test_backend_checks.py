"""The validation layer in front of the compute backends (issue #18, items 1 and 8).

No bad input may reach a compiled kernel (which has no bounds checks): each case below must raise a clear
ValueError/TypeError on the compiled path *and* on the PyTorch path. Cases that used to crash the process
run in a subprocess, so that a crash fails a test instead of killing the suite.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from shapnet import DeepShapNet, GroupedMLP, ShallowShapNet, ShapleyLayer
from shapnet._backends import compiled
from shapnet.groups import GroupIndex
from shapnet.pruning import prune_features

ROOT = Path(__file__).resolve().parents[2]

# Each case: (name, code building `call`, a function of no arguments that must raise, and the exception).
# `mlp` has 3 modules of 2 features, 2 input channels, h = 5, O = 4; `index` partitions 6 features.
SETUP = """
import torch
from shapnet import GroupedMLP
from shapnet._backends import compiled
from shapnet.coalitions import coalition_masks, shapley_weights
from shapnet.groups import GroupIndex
torch.manual_seed(0)
mlp = GroupedMLP(3, 2, 2, 4, hidden=(5,)).double()
index = GroupIndex([(0, 1), (2, 3), (4, 5)], 6)
delta = torch.randn(6, 7, 2, dtype=torch.float64)
offset = mlp.offset(None)
w1, w_out = mlp.first_weight, mlp.weights[-1]
wt, mt = shapley_weights(2, torch.float64).T.contiguous(), coalition_masks(2, torch.float64).T.contiguous()
slots = index.slots

def kernel(delta=delta, slots=slots, w1=w1, offset=offset, w_out=w_out, active=None, wt=wt, mt=mt):
    values, _ = compiled.CompiledReluModules.apply(delta, slots, w1, offset, w_out, active, wt, mt)
    values.sum().backward()
"""

CASES = {
    # More modules in the input than the layer has weights: inf garbage forward, segfault backward.
    "more_modules_than_weights": (
        "kernel(delta=torch.randn(8, 7, 2, dtype=torch.float64, requires_grad=True), "
        "slots=GroupIndex([(0, 1), (2, 3), (4, 5), (6, 7)], 8).slots)",
        "ValueError",
    ),
    "offset_too_few_rows": ("kernel(offset=torch.randn(3, 6, 5, dtype=torch.float64))", "ValueError"),
    "offset_wrong_width": ("kernel(offset=torch.randn(3, 1, 4, dtype=torch.float64))", "ValueError"),
    "offset_wrong_modules": ("kernel(offset=torch.randn(2, 1, 5, dtype=torch.float64))", "ValueError"),
    "active_wrong_shape": ("kernel(active=torch.ones(6, 6, dtype=torch.bool))", "ValueError"),
    "active_not_bool": ("kernel(active=torch.ones(6, 7))", "ValueError"),
    "slot_out_of_range": ("kernel(slots=torch.tensor([[0, 2, 4], [1, 3, 9]]))", "ValueError"),
    "negative_slot": ("kernel(slots=torch.tensor([[0, 2, -1], [1, 3, 5]]))", "ValueError"),
    "slots_not_long": ("kernel(slots=slots.int())", "TypeError"),
    "slots_wrong_group_size": ("kernel(slots=torch.tensor([[0, 2, 4]]))", "ValueError"),
    "channels_mismatch": ("kernel(delta=torch.randn(6, 7, 3, dtype=torch.float64))", "ValueError"),
    "delta_rank": ("kernel(delta=torch.randn(6, 7, dtype=torch.float64))", "ValueError"),
    "out_weight_wrong_hidden": ("kernel(w_out=torch.randn(3, 6, 4, dtype=torch.float64))", "ValueError"),
    "out_weight_wrong_modules": ("kernel(w_out=torch.randn(2, 5, 4, dtype=torch.float64))", "ValueError"),
    "mixed_dtypes": ("kernel(delta=delta.float())", "TypeError"),
    "weights_t_wrong_shape": ("kernel(wt=torch.randn(2, 3, dtype=torch.float64))", "ValueError"),
    "prune_groups_out_of_range": (
        "compiled.prune(delta, 0.5, None, 6, torch.tensor([[0, 1], [2, 6]]))",
        "ValueError",
    ),
    "prune_nan_threshold": ("compiled.prune(delta, None, float('nan'), 6, None)", "ValueError"),
    "prune_norms_wrong_shape": (
        "compiled.prune(delta, 0.5, None, 6, None, norms=torch.ones(6, 3, dtype=torch.float64))",
        "ValueError",
    ),
    "in_place_wrong_channels": (
        "with torch.no_grad(): compiled.add_values_(mlp, delta, slots, offset, None, False)",
        "ValueError",
    ),
}


@pytest.fixture(scope="module")
def kernel_outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Run every kernel-level case in one subprocess: a crash shows up as a missing or failed outcome."""
    lines = [SETUP, "import json, sys", "outcomes = {}"]
    for name, (call, _) in CASES.items():
        lines.append(
            textwrap.dedent(f"""
            try:
                {call}
                outcomes[{name!r}] = "returned"
            except Exception as err:
                outcomes[{name!r}] = type(err).__name__ + ": " + str(err)
            print(json.dumps({{{name!r}: outcomes[{name!r}]}}), flush=True)
            """)
        )
    script = tmp_path_factory.mktemp("cases") / "cases.py"
    script.write_text("\n".join(lines))
    proc = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},  # this checkout, not whichever one is installed
        timeout=600,
        check=False,
    )
    outcomes: dict[str, str] = {}
    for line in proc.stdout.splitlines():
        outcomes.update(json.loads(line))
    outcomes["__returncode__"] = str(proc.returncode)
    outcomes["__stderr__"] = proc.stderr[-2000:]
    return outcomes


@pytest.mark.parametrize("name", list(CASES))
def test_bad_kernel_input_is_rejected_before_the_kernel_runs(
    name: str, kernel_outcomes: dict[str, str]
) -> None:
    expected = CASES[name][1]
    assert name in kernel_outcomes, f"the subprocess died before this case: {kernel_outcomes['__stderr__']}"
    outcome = kernel_outcomes[name]
    assert outcome.startswith(expected + ": "), outcome
    assert len(outcome) > len(expected) + 20  # a message that says something


def test_the_case_subprocess_exits_cleanly(kernel_outcomes: dict[str, str]) -> None:
    assert kernel_outcomes["__returncode__"] == "0", kernel_outcomes["__stderr__"]


@pytest.mark.parametrize("path", ["compiled", "torch"])
@pytest.mark.parametrize(
    ("make_inputs", "error", "match"),
    [
        (
            lambda mlp: (torch.randn(8, 7, 2, dtype=torch.float64), GroupIndex.tiles(2, 4)),
            ValueError,
            "modules",
        ),
        (
            lambda mlp: (torch.randn(6, 7, 3, dtype=torch.float64), GroupIndex.tiles(2, 3)),
            ValueError,
            "channels",
        ),
        (
            lambda mlp: (torch.randn(5, 7, 2, dtype=torch.float64), GroupIndex.tiles(2, 3)),
            ValueError,
            "F = 6",
        ),
        (lambda mlp: (torch.randn(6, 7, 2), GroupIndex.tiles(2, 3)), TypeError, "float64"),
        (
            lambda mlp: (torch.randn(6, 7, 2, dtype=torch.complex128), GroupIndex.tiles(2, 3)),
            TypeError,
            "complex128",
        ),
    ],
    ids=["more-modules", "channels", "features", "dtype", "complex"],
)
@pytest.mark.parametrize("hidden", [(5,), (5, 3), ()], ids=["relu", "two-hidden", "linear"])
def test_grouped_mlp_rejects_bad_input_on_every_backend(
    monkeypatch: pytest.MonkeyPatch, path, make_inputs, error, match, hidden
) -> None:
    if path == "torch":
        monkeypatch.setattr(compiled, "applies", lambda tensor: False)
    mlp = GroupedMLP(3, 2, 2, 4, hidden=hidden).double()
    delta, index = make_inputs(mlp)
    with pytest.raises(error, match=match):
        mlp.shapley(delta, mlp.offset(None), index)


@pytest.mark.parametrize("path", ["compiled", "torch"])
def test_offset_with_too_few_rows_is_rejected(monkeypatch: pytest.MonkeyPatch, path: str) -> None:
    if path == "torch":
        monkeypatch.setattr(compiled, "applies", lambda tensor: False)
    mlp = GroupedMLP(3, 2, 2, 4, hidden=(5,)).double()
    with pytest.raises(ValueError, match="offset"):
        mlp.shapley(
            torch.randn(6, 7, 2, dtype=torch.float64),
            torch.randn(3, 6, 5, dtype=torch.float64),
            GroupIndex.tiles(2, 3),
        )


@pytest.mark.parametrize("path", ["compiled", "torch"])
@pytest.mark.parametrize("hidden", [(5,), (5, 3), ()], ids=["relu", "two-hidden", "linear"])
@pytest.mark.parametrize("sparse", [False, True])
def test_grouped_mlp_handles_an_empty_batch(monkeypatch: pytest.MonkeyPatch, path, hidden, sparse) -> None:
    if path == "torch":
        monkeypatch.setattr(compiled, "applies", lambda tensor: False)
    mlp = GroupedMLP(3, 2, 2, 4, hidden=hidden).double()
    delta = torch.randn(6, 0, 2, dtype=torch.float64, requires_grad=True)
    for index in (
        GroupIndex.tiles(2, 3),
        GroupIndex([(0, 3), (1, 4), (2, 5)], 6),
        GroupIndex([(0, 1), (2,), (4, 5)], 6),
    ):
        result = mlp.shapley(delta, mlp.offset(None), index, sparse=sparse)
        assert result.values.shape == (6, 0, 4)
        assert result.skipped == 0.0
        result.values.sum().backward()
        assert delta.grad.shape == delta.shape


@pytest.mark.parametrize("path", ["compiled", "torch"])
def test_layers_and_models_on_an_empty_batch(monkeypatch: pytest.MonkeyPatch, path: str) -> None:
    if path == "torch":
        monkeypatch.setattr(compiled, "applies", lambda tensor: False)
    layer = ShapleyLayer([(0, 2), (1, 3)], 2, 3, hidden=(4,))
    out = layer.shapley(torch.randn(0, 4, 2))
    assert out.values.shape == (0, 4, 3) and out.base.shape == (0, 3)
    for model in (DeepShapNet(6, 3, channels=4, hidden=(8,)), ShallowShapNet(5, 2, hidden=(4,))):
        x = torch.randn(0, model.input_shape[0])
        with torch.no_grad():
            explanation = model.explain(x)
        assert explanation.values.shape == (0, model.input_shape[0], model.n_outputs)
        assert model(x).shape == (0, model.n_outputs)


def test_prune_features_rejects_groups_outside_the_representation() -> None:
    rep = torch.randn(6, 4, 2)
    with pytest.raises(ValueError, match="groups"):
        prune_features(rep, 0.5, None, groups=torch.tensor([[0, 1], [2, 7]]))
    with pytest.raises(ValueError, match="NaN"):
        prune_features(rep, None, float("nan"))


def test_import_without_a_writable_cache_directory(tmp_path: Path) -> None:
    """Read-only package, no writable home and an unusable NUMBA_CACHE_DIR: import works, with one warning.

    Paths below a regular file can never be created, not even by root, so numba finds no cache location.
    """
    site = tmp_path / "site"
    shutil.copytree(
        ROOT / "shapnet", site / "shapnet", ignore=shutil.ignore_patterns("__pycache__", "*.nbi", "*.nbc")
    )
    for package in (site / "shapnet", site / "shapnet" / "_backends"):
        (package / "__pycache__").write_text("not a directory")  # numba's in-tree cache cannot exist
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, so nothing can be created below it")
    for path in sorted(site.rglob("*"), reverse=True):
        path.chmod(0o444 if path.is_file() else 0o555)
    env = {
        **os.environ,
        "PYTHONPATH": str(site),
        "HOME": str(blocker / "home"),
        "XDG_CACHE_HOME": str(blocker / "cache"),
        "NUMBA_CACHE_DIR": str(blocker / "numba"),
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    # A kernel compiled in memory: the smallest one, as the others take 10-20 s (more on a busy machine).
    script = textwrap.dedent(
        """
        import warnings
        warnings.simplefilter("always")
        import numpy as np
        import shapnet
        from shapnet import kernels
        assert shapnet.__file__.startswith(SITE), shapnet.__file__
        total = np.zeros((2, 3))
        kernels._add(total, np.ones((2, 3)))
        assert (total == 1).all()
        print("ok")
    """
    ).replace("SITE", repr(str(site)))
    try:
        proc = subprocess.run(
            [sys.executable, "-c", script],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
            timeout=900,
            check=False,
        )
    finally:
        for path in site.rglob("*"):
            path.chmod(0o755 if path.is_dir() else 0o644)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == "ok"
    assert proc.stderr.count("numba cannot cache the compiled kernels") == 1, proc.stderr[-3000:]
