"""ROAR / KAR harness: separates an oracle from random, resumes without loss or duplicates, runs on Dask."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmarks import roar
from benchmarks.methods import METHODS, MethodSpec, get_method
from benchmarks.models import ModelConfig, build_model
from shapnet.datasets import Dataset

RELEVANT = (0, 1, 2)  # the label depends on these 3 of 12 features
N_FEATURES = 12
MLP = ModelConfig(kind="mlp", hidden=(32,), epochs=25, batch_size=64, lr=1e-2)


def synthetic(n_train: int = 600, n_test: int = 300, seed: int = 0) -> Dataset:
    """y = [x0 + x1 + x2 > 0] with 9 irrelevant standard normal features (standardised like shapnet's data)."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n_train + n_test, N_FEATURES)).astype(np.float32)
    y = (X[:, list(RELEVANT)].sum(1) > 0).astype(np.int64)
    return Dataset(
        name="synthetic_3_of_12", X_train=X[:n_train], X_test=X[n_train:], y_train=y[:n_train], y_test=y[n_train:],
        feature_names=[f"x{i}" for i in range(N_FEATURES)], class_names=["neg", "pos"], task="classification",
        image_shape=None, mean=np.zeros(N_FEATURES, np.float32), scale=np.ones(N_FEATURES, np.float32),
    )


def _oracle(model, x, target, *, background, seed):  # noqa: ANN001, ANN202 (registry signature)
    scores = torch.zeros(x.shape)
    scores[:, list(RELEVANT)] = 1.0
    return scores


ORACLE = MethodSpec("oracle", "test", "1 on the 3 features the label depends on, 0 elsewhere", _oracle)


def settings(out: Path, **overrides: object) -> roar.RoarSettings:
    base = dict(
        dataset=synthetic(), methods=[ORACLE, "random"], fractions=(0.25, 0.75), repeats=1, model=MLP,
        out=out, n_jobs=1, progress=False,
    )
    base.update(overrides)
    return roar.RoarSettings(**base)  # type: ignore[arg-type]


def accuracies(rows: list[dict]) -> dict[tuple, float]:
    return {roar.Cell(r["method"], r["mode"], r["fraction"], r["repeat"]).key: r["test_accuracy"] for r in rows}


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("reference")
    return {**roar.run_roar(settings(out), log=lambda _: None), "out": out}


def test_oracle_beats_random_in_roar_and_kar(reference_run: dict) -> None:
    acc = accuracies(reference_run["results"])
    baseline = acc[("baseline", "none", 0.0, 0)]
    assert baseline > 0.9
    # ROAR, 25 % removed: the oracle removes exactly the 3 informative features -> chance level;
    # random keeps most of them.
    assert acc[("oracle", "roar", 0.25, 0)] < 0.65
    assert acc[("random", "roar", 0.25, 0)] > acc[("oracle", "roar", 0.25, 0)] + 0.15
    # KAR, 75 % (the 9 least important) removed: the oracle keeps exactly the informative ones.
    assert acc[("oracle", "kar", 0.75, 0)] > 0.85
    assert acc[("oracle", "kar", 0.75, 0)] > acc[("random", "kar", 0.75, 0)] + 0.15
    summary = {(r["method"], r["mode"]): r for r in reference_run["summary"]}
    assert summary[("oracle", "roar")]["auc"] < summary[("random", "roar")]["auc"]
    assert summary[("oracle", "kar")]["auc"] > summary[("random", "kar")]["auc"]


def test_outputs_written(reference_run: dict) -> None:
    out = reference_run["out"]
    rows = roar.read_results(out / "results.csv")
    assert len(rows) == 1 + 2 * 2 * 2  # the shared baseline + methods x modes x fractions
    assert accuracies(rows) == accuracies(reference_run["results"])
    for name in ("summary.csv", "roar.png", "methods.json"):
        assert (out / name).stat().st_size > 0
    saved = json.loads((out / "methods.json").read_text())
    assert saved["unsupported"] == {}
    assert saved["settings"]["fractions"] == [0.25, 0.75] and "machine" in saved


def test_interrupted_run_resumes_with_every_cell_once(tmp_path: Path, reference_run: dict) -> None:
    calls = []

    def stop_after_three(row: dict) -> None:
        calls.append(row)
        if len(calls) == 3:
            raise KeyboardInterrupt("simulated kill")

    with pytest.raises(KeyboardInterrupt):
        roar.run_roar(settings(tmp_path), on_cell=stop_after_three, log=lambda _: None)
    assert len(roar.read_results(tmp_path / "results.csv")) == 3  # the finished cells are on disk
    result = roar.run_roar(settings(tmp_path), log=lambda _: None)
    rows = roar.read_results(tmp_path / "results.csv")  # raises on any duplicated cell
    keys = [roar.Cell(r["method"], r["mode"], r["fraction"], r["repeat"]).key for r in rows]
    assert len(keys) == len(set(keys)) == 9
    assert set(keys) == set(accuracies(reference_run["results"]))
    # Same seeds: the resumed run reproduces the uninterrupted one cell for cell.
    assert accuracies(rows) == accuracies(reference_run["results"]) == accuracies(result["results"])
    # Attributions and the original model came from the cache the second time.
    assert len(list((tmp_path / "cache").glob("attr-*.npz"))) == 2


def test_unterminated_last_line_is_dropped_and_recomputed(tmp_path: Path, reference_run: dict) -> None:
    shutil.copytree(reference_run["out"], tmp_path, dirs_exist_ok=True)
    path = tmp_path / "results.csv"
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:-1]) + lines[-1][:10])  # a kill in the middle of the last append
    with pytest.warns(UserWarning, match="unterminated last line"):
        result = roar.run_roar(settings(tmp_path), log=lambda _: None)
    assert accuracies(result["results"]) == accuracies(reference_run["results"])
    assert len(roar.read_results(path)) == 9


def test_dask_cluster_gives_the_same_cells(tmp_path: Path, reference_run: dict) -> None:
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
    ) as cluster:
        result = roar.run_roar(settings(tmp_path, scheduler=cluster.scheduler_address, n_jobs=2), log=lambda _: None)
    assert accuracies(result["results"]) == accuracies(reference_run["results"])
    assert torch.get_num_threads() == 1  # restored (conftest pins the test process to 1 thread)


def test_corrupt_results_file_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "results.csv"
    header = ",".join(roar.RESULT_COLUMNS)
    good = "baseline,none,0,0,0.95,0,1.0,1000,abc"
    path.write_text(f"{header}\n{good}\nrandom,roar,zero.five,0,0.9,0.1,1.0,1000,abc-def\n")
    with pytest.raises(ValueError, match=r"results\.csv, line 3: .*numeric field"):
        roar.read_results(path)
    path.write_text(f"{header}\n{good}\n{good}\n")
    with pytest.raises(ValueError, match=r"line 3: duplicates the cell of line 2"):
        roar.read_results(path)
    path.write_text("not,a,results,file\n")
    with pytest.raises(ValueError, match="line 1: expected the header"):
        roar.read_results(path)
    path.write_text(f"{header}\nrandom,roar,0.5,0\n")
    with pytest.raises(ValueError, match="line 2: expected 9 comma-separated fields, got 4"):
        roar.run_roar(settings(tmp_path), log=lambda _: None)


def test_other_settings_in_the_same_out_dir_are_refused(tmp_path: Path) -> None:
    fast = ModelConfig(kind="mlp", hidden=(8,), epochs=2)
    roar.run_roar(settings(tmp_path, model=fast, fractions=(0.5,), modes=("roar",)), log=lambda _: None)
    with pytest.raises(ValueError, match="computed with other settings"):
        roar.run_roar(settings(tmp_path, model=fast, fractions=(0.5,), modes=("roar",), rank="signed"),
                      log=lambda _: None)


def test_unsupported_methods_are_listed_with_reasons(tmp_path: Path) -> None:
    def broken(model, x, target, *, background, seed):  # noqa: ANN001, ANN202
        raise RuntimeError("boom: this method cannot handle the model")

    lines: list[str] = []
    fast = ModelConfig(kind="mlp", hidden=(8,), epochs=2)
    result = roar.run_roar(
        settings(tmp_path, dataset=synthetic(n_train=40, n_test=20), model=fast, fractions=(0.5,), modes=("roar",),
                 methods=["shapnet", "random", "deeplift", MethodSpec("broken", "test", "always fails", broken)]),
        log=lines.append,
    )
    unsupported = result["unsupported"]
    assert set(unsupported) == {"shapnet", "broken"}
    assert "needs a ShapNet" in unsupported["shapnet"] and "MLP" in unsupported["shapnet"]
    assert "RuntimeError: boom" in unsupported["broken"]
    printed = "\n".join(lines)
    assert "shapnet: needs a ShapNet" in printed and "broken: failed on this model: RuntimeError" in printed
    saved = json.loads((tmp_path / "methods.json").read_text())
    assert saved["unsupported"] == unsupported
    assert saved["methods"]["deeplift"]["status"] == "ok"  # an MLP has nn.ReLU modules
    assert {r["method"] for r in result["results"]} == {"baseline", "random", "deeplift"}


def test_static_support_on_deep_shapnet_and_mlp() -> None:
    deep = build_model(ModelConfig(kind="deep"), (20,), 2, seed=0)
    mlp = build_model(ModelConfig(kind="mlp"), (20,), 2, seed=0)
    assert get_method("shapnet").supports(deep, 20) is None
    assert "needs a ShapNet" in get_method("shapnet").supports(mlp, 20)
    for name in ("deeplift", "deeplift_shap", "shap_deep"):
        assert "custom autograd function" in METHODS[name].supports(deep, 20)
        assert METHODS[name].supports(mlp, 20) is None
    assert "d <= 15" in get_method("shap_exact").supports(deep, 20)
    assert get_method("shap_exact").supports(deep, 15) is None
    with pytest.raises(ValueError, match="unknown attribution method 'nope'"):
        get_method("nope")


def test_removal_masks_and_auc() -> None:
    scores = np.array([[0.1, 5.0, -3.0, 0.0], [2.0, 1.0, 0.5, -9.0]])
    order = roar.importance_order(roar.feature_scores(scores, "abs"), seed=0)
    assert order.tolist() == [[1, 2, 0, 3], [3, 0, 1, 2]]
    roar_mask = roar.removal_mask(order, 0.5, "roar")
    kar_mask = roar.removal_mask(order, 0.5, "kar")
    assert roar_mask.tolist() == [[False, True, True, False], [True, False, False, True]]
    assert (roar_mask ^ kar_mask).all()  # at 50 % KAR replaces exactly the complement
    signed = roar.importance_order(roar.feature_scores(scores, "signed"), seed=0)
    assert signed[1].tolist() == [0, 1, 2, 3]
    X = np.arange(8, dtype=np.float32).reshape(2, 4)
    assert roar.apply_removal(X, roar_mask, np.full(4, -1, np.float32)).tolist() == [[0, -1, -1, 3], [-1, 5, 6, -1]]
    # Images: ranked per pixel (|a| summed over channels), whole pixels replaced by the channel means.
    images = np.random.default_rng(0).standard_normal((3, 2, 4, 4)).astype(np.float32)
    pixel_scores = roar.feature_scores(images, "abs")
    assert pixel_scores.shape == (3, 16)
    mask = roar.removal_mask(roar.importance_order(pixel_scores, 0), 0.25, "roar")
    filled = roar.apply_removal(images, mask, np.array([10.0, 20.0], np.float32))
    assert (filled[:, 0].reshape(3, 16)[mask] == 10).all() and (filled[:, 1].reshape(3, 16)[mask] == 20).all()
    assert (filled.reshape(3, 2, 16)[:, :, ~mask[0]][0] == images.reshape(3, 2, 16)[:, :, ~mask[0]][0]).all()
    x, y = [0.0, 0.1, 0.3, 0.9], [0.9, 0.8, 0.6, 0.5]
    assert roar.area_under_curve(x, y) == pytest.approx(float(np.trapezoid(y, x)))


def test_random_ties_do_not_favour_low_indices() -> None:
    order = roar.importance_order(np.zeros((2000, 4)), seed=0)
    first = np.bincount(order[:, 0], minlength=4) / 2000
    assert np.all(np.abs(first - 0.25) < 0.05)


def test_cli_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli"
    code = roar.main([
        "--dataset", "wine", "--methods", "shapnet,random,saliency", "--fractions", "0.5", "--repeats", "1",
        "--epochs", "2", "--n-jobs", "1", "--out", str(out), "--no-progress",
    ])
    assert code == 0
    for name in ("results.csv", "summary.csv", "roar.png", "methods.json"):
        assert (out / name).stat().st_size > 0
    rows = roar.read_results(out / "results.csv")
    assert {(r["method"], r["mode"]) for r in rows} == {
        ("baseline", "none"), *((m, mode) for m in ("shapnet", "random", "saliency") for mode in ("roar", "kar"))
    }
    summary = (out / "summary.csv").read_text().splitlines()
    assert summary[0].startswith("method,mode,repeats,acc_0,std_0,acc_0.5,std_0.5,auc,auc_std")
    assert len(summary) == 1 + 3 * 2
    printed = capsys.readouterr().out
    assert "AUC" in printed and "shapnet" in printed
    assert roar.main(["--dataset", "wine", "--methods", "nope", "--out", str(out)]) == 2
    assert "unknown attribution method 'nope'" in capsys.readouterr().err


# Methods whose values sum to f(x) - f(background) for the target by construction (efficiency).
EFFICIENT = {"shapnet", "shapley_value_sampling", "shap_permutation", "shap_kernel", "kernel_shap", "deeplift",
             "deeplift_shap", "shap_deep"}


# shap's masked-model explainers JIT-compile (numba) for ~10 s on their first call in a process: too slow
# for this file; their support rule is tested above.
NUMBA_JIT = {"shap_exact", "shap_permutation"}


@pytest.mark.parametrize("kind", ["mlp", "deep"])
def test_every_method_explains_the_same_game(kind: str) -> None:
    """Each supported method returns input-shaped attributions of the target, against the given background."""
    n = 6
    model = build_model(ModelConfig(kind=kind, hidden=(8,), channels=4), (n,), 3, seed=0)
    x = torch.randn(4, n)
    background = torch.full((1, n), 0.3)
    if kind == "deep":  # a Deep ShapNet explains against its own reference: make it the background
        model.reference.copy_(background[0])
    target = torch.tensor([0, 1, 2, 0])
    with torch.no_grad():
        gap = (model(x) - model(background)).gather(1, target[:, None]).squeeze(1)
    ran = set()
    for name, spec in METHODS.items():
        if name in NUMBA_JIT or spec.supports(model, n) is not None:
            continue
        attr = spec(model, x, target, background=background, seed=0)
        assert attr.shape == x.shape and torch.isfinite(attr).all(), name
        if name in EFFICIENT:
            torch.testing.assert_close(attr.sum(1), gap, atol=1e-4, rtol=1e-4, msg=lambda m: f"{name}: {m}")
        ran.add(name)
    expected_unsupported = {"mlp": {"shapnet"}, "deep": {"deeplift", "deeplift_shap", "shap_deep"}}[kind]
    assert ran == set(METHODS) - NUMBA_JIT - expected_unsupported
    assert not torch.equal(get_method("random")(model, x, target, background=background, seed=0),
                           get_method("random")(model, x, target, background=background, seed=1))
