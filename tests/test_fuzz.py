"""Property-based fuzz test of the public API (issue #18): random shapes, dtypes, values and targets.

Every outcome must be either a correct result (right shape and dtype, finite, local accuracy, missingness,
forward equal to the explanation's predictions, Captum's delta ~ 0) or a ``TypeError``/``ValueError`` with
a message; valid input must always give a result, invalid input never. Both the compiled kernels and the
PyTorch tiles are exercised. Seeded (``derandomize``) and bounded, so it is deterministic and fast in CI.
Kernel-level calls that could crash the interpreter run in a subprocess (see the last test).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from contextlib import nullcontext
from unittest import mock

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shapnet._backends import compiled

from shapnet import DeepShapNet, HarsanyiNet, ShallowShapNet, Stage, VisionShapNet, shapley_consistency

FUZZ = settings(
    max_examples=int(os.environ.get("SHAPNET_FUZZ_EXAMPLES", "150")),
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

BUILDERS = {
    "deep": lambda: DeepShapNet(5, 3, channels=3, hidden=(6,), reference=torch.linspace(-1, 1, 5)),
    "deep-gelu": lambda: DeepShapNet(4, 3, channels=3, hidden=(6,), activation="gelu"),
    "deep-pruned": lambda: DeepShapNet(8, 3, channels=3, hidden=(6,), prune=0.5, reference=0.5),
    "shallow": lambda: ShallowShapNet(5, 3, hidden=(6,), reference=torch.linspace(0, 1, 5)),
    "vision": lambda: VisionShapNet(
        2, 3, stages=[Stage(3, hidden=(4,))], image_size=(3, 4), readout_hidden=(4,), reference=[0.1, -0.2]
    ),
    "harsanyi": lambda: HarsanyiNet(4, 3, hidden=(6, 6)),
}
_MODELS: dict[tuple[str, torch.dtype], torch.nn.Module] = {}


def model_for(kind: str, dtype: torch.dtype) -> torch.nn.Module:
    if (kind, dtype) not in _MODELS:
        torch.manual_seed(0)
        _MODELS[kind, dtype] = BUILDERS[kind]().to(dtype).eval()
    return _MODELS[kind, dtype]


INPUT_DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.complex64, torch.int64, torch.bool]
VALUES = ["normal", "large", "tiny", "reference", "zeros", "nan", "inf", "mixed-reference"]
SHAPES = ["ok", "ok", "ok", "ok", "drop-batch", "extra-dim", "feature+1", "feature-1"]
OPS = ["forward", "explain", "explain-layers", "captum", "quantus", "shap", "consistency"]
TARGETS = st.one_of(
    st.none(), st.integers(-4, 4), st.just(2**70), st.lists(st.integers(-1, 3), min_size=0, max_size=5)
)


def make_input(model, batch: int, shape_kind: str, values: str, dtype: torch.dtype, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    shape = [batch, *model.input_shape]
    if shape_kind == "drop-batch":
        shape = shape[1:]
    elif shape_kind == "extra-dim":
        shape = [*shape, 1]
    elif shape_kind in ("feature+1", "feature-1"):
        shape[-1] += 1 if shape_kind == "feature+1" else -1
    x = torch.randn(*shape, generator=gen, dtype=torch.float64)
    reference = model.reference.double()
    if values == "large":
        x = x * 1e6
    elif values == "tiny":
        x = x * 1e-30
    elif values == "zeros":
        x = torch.zeros_like(x)
    elif values in ("reference", "mixed-reference") and shape_kind == "ok":
        at_ref = reference.expand_as(x).clone()
        x = at_ref if values == "reference" else torch.where(torch.rand(x.shape, generator=gen) < 0.5, at_ref, x)
    elif values == "nan" and x.numel():
        x.view(-1)[int(torch.randint(x.numel(), (1,), generator=gen))] = float("nan")
    elif values == "inf" and x.numel():
        x.view(-1)[0] = float("inf")
    if dtype == torch.bool:
        return x > 0
    if dtype == torch.complex64:
        return torch.complex(x.float(), torch.randn(x.shape, generator=gen))
    if dtype == torch.int64:
        return x.clamp(-100, 100).round().long()
    return x.to(dtype)


def input_is_valid(model, x: torch.Tensor, op: str, target: object) -> bool:
    """Whether ``op`` must give a result for ``x`` and ``target`` (the spec the fuzz test holds it to)."""
    if tuple(x.shape[1:]) != tuple(model.input_shape) or x.dim() != len(model.input_shape) + 1:
        return False
    casts = op in ("quantus", "shap")  # numpy-facing adapters take any real input and cast (shap, Quantus do)
    if x.is_complex() or (not casts and x.dtype != model.reference.dtype):
        return False
    if x.is_floating_point() and not bool(torch.isfinite(x.to(torch.float64)).all()):
        return False
    if casts and x.dtype != model.reference.dtype:
        cast = x.to(model.reference.dtype)
        if not bool(torch.isfinite(cast).all()):
            return False
    k, b = model.n_outputs, x.shape[0]
    if op == "captum":
        return _valid_target(target, b, k, negative=True, none_ok=False)
    if op == "quantus":  # Quantus passes one label or one per row; a one-element list is one label
        one = isinstance(target, list) and len(target) == 1
        return _valid_target(target[0] if one else target, b, k, negative=True, none_ok=False)
    if op == "consistency":
        n_players = model.input_shape[0] if len(model.input_shape) == 1 else model.input_shape[1] * model.input_shape[2]
        return n_players >= 2 and _valid_target(target, b, k, negative=False, none_ok=True)
    return True


def _valid_target(target: object, batch: int, k: int, *, negative: bool, none_ok: bool) -> bool:
    low = -k if negative else 0
    if target is None:
        return none_ok
    if isinstance(target, int):
        return low <= target < k
    return len(target) == batch and all(low <= t < k for t in target)


def _close(a: torch.Tensor, b: torch.Tensor, scale: torch.Tensor, dtype: torch.dtype) -> bool:
    eps = 2e-3 if dtype == torch.float32 else 1e-9
    return bool(((a.double() - b.double()).abs() <= eps * (1 + scale.double())).all())


def check_result(model, x: torch.Tensor, op: str, target: object, result: object) -> None:
    """Assert that ``result`` is a correct answer for ``op`` on valid input."""
    b, k, dtype = x.shape[0], model.n_outputs, model.reference.dtype
    with torch.no_grad():
        xm = x.to(dtype)
        logits = model(xm)
        ex = model.explain(xm)
    assert logits.shape == (b, k) and logits.dtype == dtype and bool(torch.isfinite(logits).all())
    features = tuple(range(1, ex.values.dim() - 1))
    scale = ex.values.abs().sum(features) + ex.base_values.abs()
    assert _close(ex.values.sum(features) + ex.base_values, ex.predictions, scale, dtype)  # local accuracy
    assert _close(ex.predictions, logits, scale, dtype)
    players = ex.values.shape[1:-1].numel()
    at_ref = (xm == model.reference).reshape(b, players) if len(model.input_shape) == 1 else (
        (xm == model.reference).all(1).reshape(b, players)
    )
    assert bool((ex.values.reshape(b, players, k)[at_ref] == 0).all())  # missingness, exactly
    if op == "forward":
        assert torch.equal(result, logits) or _close(result, logits, scale, dtype)
    elif op in ("explain", "explain-layers"):
        top = scale.max() if scale.numel() else scale.new_zeros(())
        assert result.values.shape == ex.values.shape and _close(result.values, ex.values, top, dtype)
        if op == "explain-layers":
            assert result.layers is not None and all(t.shape[0] == b for t in result.layers)
    elif op == "captum":
        attributions, delta = result
        assert attributions.shape == x.shape and delta.shape == (b,)
        assert _close(delta, torch.zeros_like(delta), scale.max(1).values if b else delta, dtype)
    elif op == "quantus":
        assert result.shape == tuple(x.shape) and np.isfinite(result).all()
    elif op == "shap":
        assert result.values.shape == (b, *model.input_shape, k) and np.isfinite(result.values).all()
        total = result.values.reshape(b, int(np.prod(model.input_shape)), k).sum(1) + result.base_values
        assert _close(torch.as_tensor(total), logits, scale, dtype)
    elif op == "consistency":
        assert result.dim() == 0 and bool(torch.isfinite(result)) and float(result) >= 0


def run(model, x: torch.Tensor, op: str, target: object) -> object:
    if op == "forward":
        return model(x)
    if op == "explain":
        return model.explain(x)
    if op == "explain-layers":
        return model.explain(x, layers=True)
    if op == "captum":
        from shapnet_adapters.captum import ShapNetAttribution

        return ShapNetAttribution(model).attribute(x, target=target, return_convergence_delta=True)
    if op == "quantus":
        from shapnet_adapters.quantus import explain_func

        return explain_func(model, x.numpy() if x.dtype not in (torch.bfloat16,) else x, target)
    if op == "shap":
        from shapnet_adapters.shap import ShapNetExplainer

        return ShapNetExplainer(model)(x)
    values = model.explain(x).values
    return shapley_consistency(model, x, values, target=target, generator=torch.Generator().manual_seed(0))


@FUZZ
@given(
    kind=st.sampled_from(sorted(BUILDERS)),
    model_dtype=st.sampled_from([torch.float32, torch.float64]),
    batch=st.integers(0, 4),
    shape_kind=st.sampled_from(SHAPES),
    values=st.sampled_from(VALUES),
    dtype=st.sampled_from(INPUT_DTYPES),
    op=st.sampled_from(OPS),
    target=TARGETS,
    torch_path=st.booleans(),
    grad=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_public_api_gives_a_correct_result_or_a_clear_error(
    kind, model_dtype, batch, shape_kind, values, dtype, op, target, torch_path, grad, seed
) -> None:
    model = model_for(kind, model_dtype)
    x = make_input(model, batch, shape_kind, values, dtype, seed)
    if op in ("captum", "quantus") and isinstance(target, list):
        target = target[: x.shape[0]] if x.dim() and len(target) >= x.shape[0] else target
    valid = input_is_valid(model, x, op, target)
    patch = mock.patch.object(compiled, "applies", lambda tensor: False) if torch_path else nullcontext()
    with patch, torch.set_grad_enabled(grad):
        try:
            result = run(model, x, op, target)
        except (TypeError, ValueError) as err:
            assert len(str(err)) > 10, f"an error without a message: {err!r}"
            assert not valid, f"valid input refused by {op}: {type(err).__name__}: {err}"
            return
    assert valid, f"{op} accepted invalid input (shape {tuple(x.shape)}, {x.dtype}, {values}, target={target!r})"
    check_result(model, x, op, target, result)


# ------------------------------------------------------------------------------ kernel level, isolated
KERNEL_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import torch
    from hypothesis import HealthCheck, given, settings, strategies as st
    from shapnet import GroupedMLP
    from shapnet._backends import compiled
    from shapnet.groups import GroupIndex

    CONFIGS = [  # (groups, F, C_in, O, hidden, activation)
        ([(0, 1), (2, 3), (4, 5)], 6, 2, 3, (5,), "relu"),   # a partition: the compiled kernels
        ([(0, 1, 2), (3,), (1, 4)], 5, 1, 2, (4,), "relu"),  # overlapping, padded groups
        ([(0, 1), (2, 3)], 4, 2, 2, (3, 3), "gelu"),         # plain PyTorch modules
    ]
    LAYERS = {}
    violations, counts = [], {"result": 0, "clear": 0}

    def layer(i, dtype):
        if (i, dtype) not in LAYERS:
            groups, f, c, o, hidden, act = CONFIGS[i]
            torch.manual_seed(i)
            mlp = GroupedMLP(len(groups), max(map(len, groups)), c, o, hidden=hidden, activation=act).to(dtype)
            LAYERS[i, dtype] = (mlp, GroupIndex(groups, f))
        return LAYERS[i, dtype]

    @settings(max_examples=int(sys.argv[1]), derandomize=True, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(config=st.integers(0, 2), dtype=st.sampled_from([torch.float32, torch.float64]),
           in_dtype=st.sampled_from([None, torch.float32, torch.float64, torch.int64, torch.float16]),
           df=st.integers(-1, 1), dc=st.integers(-1, 1), rows=st.integers(0, 5),
           offset_kind=st.sampled_from(["ok", "ok", "per-row", "modules-1", "modules+1", "rows+1", "width+1"]),
           active_kind=st.sampled_from(["none", "none", "ok", "features-1", "rows+1", "float"]),
           sparse=st.booleans(), grad=st.booleans(), torch_path=st.booleans(), seed=st.integers(0, 999))
    def case(config, dtype, in_dtype, df, dc, rows, offset_kind, active_kind, sparse, grad, torch_path, seed):
        mlp, index = layer(config, dtype)
        groups, f, c, o, hidden, act = CONFIGS[config]
        gen = torch.Generator().manual_seed(seed)
        delta = torch.randn(f + df, rows, c + dc, generator=gen, dtype=torch.float64).to(in_dtype or dtype)
        m, h = len(groups), hidden[0]
        offset = {"ok": lambda: mlp.offset(None), "per-row": lambda: torch.randn(m, rows, h, dtype=dtype),
                  "modules-1": lambda: torch.randn(m - 1, 1, h, dtype=dtype),
                  "modules+1": lambda: torch.randn(m + 1, 1, h, dtype=dtype),
                  "rows+1": lambda: torch.randn(m, rows + 1, h, dtype=dtype),
                  "width+1": lambda: torch.randn(m, 1, h + 1, dtype=dtype)}[offset_kind]().detach()
        offset_ok = offset_kind in ("ok", "per-row") or (
            offset_kind == "rows+1" and rows == 0)  # (M, 1, h) broadcasts over any number of rows
        valid = df == 0 and dc == 0 and in_dtype in (None, dtype) and offset_ok
        if grad and delta.is_floating_point():
            delta.requires_grad_()
        compiled_applies = compiled.applies
        if torch_path:
            compiled.applies = lambda tensor: False
        try:
            with torch.set_grad_enabled(grad):
                result = mlp.shapley(delta, offset, index, sparse=sparse)
                if grad and result.values.requires_grad:
                    result.values.sum().backward()
            outcome = "result"
            shape_ok = tuple(result.values.shape) == (f, rows, o) and bool(torch.isfinite(result.values).all())
            if not valid or not shape_ok:
                violations.append(dict(outcome="result", valid=valid, shape=list(result.values.shape), **locals_()))
        except (TypeError, ValueError) as err:
            outcome = "clear"
            if valid or len(str(err)) < 10:
                violations.append(dict(outcome=f"{type(err).__name__}: {err}"[:200], valid=valid, **locals_()))
        except Exception as err:  # noqa: BLE001 - any other exception is a finding
            outcome = "other"
            violations.append(dict(outcome=f"{type(err).__name__}: {err}"[:200], valid=valid, **locals_()))
        finally:
            compiled.applies = compiled_applies
        counts[outcome] = counts.get(outcome, 0) + 1

    def locals_():
        frame = sys._getframe(1)
        keep = ("config", "dtype", "in_dtype", "df", "dc", "rows", "offset_kind", "sparse", "grad", "torch_path")
        return {k: str(frame.f_locals[k]) for k in keep}

    case()
    print(json.dumps({"counts": counts, "violations": violations[:20]}))
    """
)


def test_kernel_level_fuzz_never_crashes_and_gives_a_result_or_a_clear_error(tmp_path) -> None:
    """Random shapes, dtypes, offsets and grad modes straight into the exported ``GroupedMLP.shapley`` (and
    its compiled and PyTorch backends), in a subprocess: a segfault or double free fails this test instead of
    killing the suite. Valid input must give finite ``(F, N, O)`` values, invalid input a clear error."""
    script = tmp_path / "kernel_fuzz.py"
    script.write_text(KERNEL_SCRIPT)
    env = {**os.environ, "PYTHONPATH": os.getcwd() + os.pathsep + os.environ.get("PYTHONPATH", "")}
    examples = os.environ.get("SHAPNET_KERNEL_FUZZ_EXAMPLES", "120")
    proc = subprocess.run([sys.executable, str(script), examples], capture_output=True, text=True, timeout=900,
                          env=env)
    assert proc.returncode == 0, f"the interpreter died (exit {proc.returncode}): {proc.stderr[-1500:]}"
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert not report["violations"], "\n".join(map(json.dumps, report["violations"]))
    assert report["counts"]["result"] > 0 and report["counts"]["clear"] > 0, report["counts"]
