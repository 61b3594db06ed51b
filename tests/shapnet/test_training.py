"""Tests for shapnet.training: the loss, fit, checkpoint/resume, evaluate and the command line."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

import shapnet
from shapnet import DeepShapNet, ShallowShapNet, Stage, VisionShapNet
from shapnet.consistency import shapley_consistency
from shapnet.io import load_checkpoint
from shapnet.regularizers import explanation_penalty
from shapnet.training import TrainResult, evaluate, fit, main, training_loss


def make_data(n: int = 96, f: int = 5, k: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Linearly separable-ish synthetic classes: ``(n, f)`` float32 and ``(n,)`` int64 labels."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, f)).astype(np.float32)
    w = rng.normal(size=(f, k))
    return X, (X @ w).argmax(1).astype(np.int64)


def make_model(f: int = 5, k: int = 3, seed: int = 0) -> DeepShapNet:
    torch.manual_seed(seed)
    return DeepShapNet(f, k, channels=4, hidden=(8,))


class Interrupt(Exception):
    pass


def same_state(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def strip_seconds(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k != "seconds"} for row in history]


# --------------------------------------------------------------------------- #
# training_loss
# --------------------------------------------------------------------------- #
def test_training_loss_adds_each_penalty_to_the_criterion() -> None:
    X, y = make_data()
    model = make_model()
    x, t = torch.from_numpy(X[:16]), torch.from_numpy(y[:16])
    ce = nn.CrossEntropyLoss()
    base, logits = training_loss(model, x, t, ce)
    torch.testing.assert_close(base, ce(model(x), t))
    torch.testing.assert_close(logits, model(x))
    ex = model.explain(x, layers=True)
    for kind in ("l1", "linf"):
        for layers in ("last", "all"):
            loss, _ = training_loss(model, x, t, ce, reg_layers=layers, **{kind: 0.5})
            expected = base + 0.5 * explanation_penalty(ex, kind, layers=layers)
            torch.testing.assert_close(loss, expected)
            assert float(loss.detach()) > float(base.detach())
    all_layers, _ = training_loss(model, x, t, ce, l1=0.5, reg_layers="all")
    last_layer, _ = training_loss(model, x, t, ce, l1=0.5, reg_layers="last")
    assert float(all_layers.detach()) > float(last_layer.detach())  # more layers penalised


def test_training_loss_consistency_term_is_added_and_differentiable() -> None:
    X, y = make_data()
    model = make_model()
    x, t = torch.from_numpy(X[:16]), torch.from_numpy(y[:16])
    ce = nn.CrossEntropyLoss()
    base, _ = training_loss(model, x, t, ce)
    torch.manual_seed(3)
    loss, logits = training_loss(model, x, t, ce, consistency=10.0, n_coalitions=2)
    assert float(loss.detach()) > float(base.detach())
    torch.testing.assert_close(logits, model(x))
    # Folded into one forward, it equals the stand-alone loss with the same coalitions (same RNG draws).
    torch.manual_seed(3)
    expected = base + 10.0 * shapley_consistency(model, x, model.explain(x).values, n_coalitions=2)
    torch.testing.assert_close(loss, expected)
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())
    # An additive model (a GAM ShallowShapNet) satisfies v(S) = sum_{i in S} phi_i: the term is 0.
    shallow = ShallowShapNet(5, 3, groups="gam", hidden=(8,)).double()
    base_s, _ = training_loss(shallow, x.double(), t, ce)
    loss_s, _ = training_loss(shallow, x.double(), t, ce, consistency=10.0, n_coalitions=4)
    torch.testing.assert_close(loss_s, base_s)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"epochs": 0}, "epochs"),
        ({"reg_layers": "first"}, "reg_layers"),
        ({"l1": -1.0}, "l1"),
        ({"consistency": float("nan")}, "consistency"),
        ({"n_coalitions": 0}, "n_coalitions"),
        ({"batch_size": 0}, "batch_size"),
        ({"task": "ranking"}, "task"),
        ({"lr_schedule": "step"}, "lr_schedule"),
    ],
)
def test_fit_rejects_bad_options(kwargs: dict, match: str) -> None:
    X, y = make_data()
    options = {"epochs": 1, "progress": False, **kwargs}
    with pytest.raises(ValueError, match=match):
        fit(make_model(), X, y, **options)


def test_fit_rejects_bad_data() -> None:
    X, y = make_data()
    with pytest.raises(ValueError, match="y_train must have shape"):
        fit(make_model(), X, y[:-1], epochs=1, progress=False)
    with pytest.raises(ValueError, match=r"class indices in \[0, 3\)"):
        fit(make_model(), X, y + 5, epochs=1, progress=False)
    with pytest.raises(TypeError, match="numpy array or a torch.Tensor"):
        fit(make_model(), X.tolist(), y, epochs=1, progress=False)
    with pytest.raises(TypeError, match="ShapNet"):
        fit(nn.Linear(5, 3), X, y, epochs=1, progress=False, l1=0.1)
    with pytest.raises(TypeError, match="ShapNet"):
        fit(nn.Linear(5, 3), X, y, epochs=1, progress=False, checkpoint="never-written.pt")
    with pytest.raises(TypeError, match="nn.Module"):
        fit(lambda x: x, X, y, epochs=1, progress=False)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"class indices in \[0, 3\)"):
        fit(nn.Linear(5, 3), X, y + 1, epochs=1, progress=False)  # a plain module: its width is probed
    with pytest.raises(ValueError, match="X_val and y_val"):
        fit(make_model(), X, y, epochs=1, progress=False, X_val=X)
    with pytest.raises(ValueError, match="n_outputs=1"):
        fit(make_model(), X, y.astype(np.float32), epochs=1, progress=False, task="regression")


# --------------------------------------------------------------------------- #
# fit
# --------------------------------------------------------------------------- #
def test_fit_learns_and_records_history() -> None:
    X, y = make_data(n=160)
    model = make_model()
    before = evaluate(model, X, y)
    result = fit(model, X, y, epochs=8, batch_size=32, lr=1e-2, progress=False, X_val=X[:64], y_val=y[:64])
    assert isinstance(result, TrainResult) and result.model is model and result.epochs == 8
    assert [row["epoch"] for row in result.history] == list(range(1, 9))
    assert set(result.history[0]) == {"epoch", "loss", "train_acc", "val_acc", "lr", "seconds"}
    assert result.history[-1]["loss"] < result.history[0]["loss"]
    assert evaluate(model, X, y) > max(before, 0.8)
    assert result.history[-1]["val_acc"] == pytest.approx(evaluate(model, X[:64], y[:64]))
    assert result.history[-1]["lr"] == pytest.approx(0.0, abs=1e-12)  # cosine ends at 0
    assert result.seconds > 0 and not model.training


def test_fit_leaves_the_callers_rng_alone_and_is_deterministic() -> None:
    X, y = make_data()
    models = [make_model() for _ in range(3)]
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    a = fit(models[0], X, y, epochs=2, consistency=1.0, progress=False, seed=7).model
    assert torch.equal(torch.rand(3), expected)
    b = fit(models[1], X, y, epochs=2, consistency=1.0, progress=False, seed=7).model
    c = fit(models[2], X, y, epochs=2, consistency=1.0, progress=False, seed=8).model
    assert same_state(a, b)
    assert not same_state(a, c)


def test_fit_regression_reports_r2() -> None:
    rng = np.random.default_rng(1)
    X = rng.normal(size=(128, 4)).astype(np.float32)
    y = (X[:, 0] - X[:, 1] + 0.5 * X[:, 2] * X[:, 3]).astype(np.float32)
    torch.manual_seed(0)
    model = DeepShapNet(4, 1, channels=8, hidden=(16,))
    result = fit(model, X, y, epochs=15, batch_size=16, lr=1e-2, task="regression", progress=False)
    assert {"train_r2", "val_r2"} <= set(result.history[0])
    r2 = evaluate(model, X, y, task="regression")
    assert r2 > 0.6
    assert result.history[-1]["train_r2"] > result.history[0]["train_r2"]


def test_l1_penalty_makes_explanations_sparser() -> None:
    X, y = make_data(n=128)
    plain = fit(make_model(), X, y, epochs=6, lr=1e-2, progress=False).model
    sparse = fit(make_model(), X, y, epochs=6, lr=1e-2, l1=0.5, progress=False).model
    x = torch.from_numpy(X)
    with torch.no_grad():
        assert float(sparse.explain(x).values.abs().sum()) < 0.7 * float(plain.explain(x).values.abs().sum())


# --------------------------------------------------------------------------- #
# Checkpoints and resuming
# --------------------------------------------------------------------------- #
def test_checkpoint_round_trips_with_weights_only(tmp_path) -> None:
    X, y = make_data()
    path = tmp_path / "ckpt.pt"
    model = fit(make_model(), X, y, epochs=2, checkpoint=path, progress=False).model
    payload = load_checkpoint(path)  # torch.load(weights_only=True) inside
    extra = payload["extra"]
    assert extra["epoch"] == 2 and extra["epochs"] == 2 and len(extra["history"]) == 2
    assert set(extra["optimizer"]) == {"state", "param_groups"}
    assert extra["scheduler"]["last_epoch"] == 2 * 1  # 96 rows, batch 128: one step per epoch
    assert set(extra["rng"]) == {"torch", "shuffle"}
    assert same_state(shapnet.load(path), model)
    assert not (tmp_path / "ckpt.pt.tmp").exists()


@pytest.mark.parametrize("lr_schedule", ["cosine", None])
def test_interrupted_then_resumed_run_equals_straight_run(tmp_path, lr_schedule: str | None) -> None:
    X, y = make_data(n=100)
    options = dict(epochs=4, batch_size=16, lr=1e-2, consistency=0.5, lr_schedule=lr_schedule, progress=False)
    straight = fit(make_model(), X, y, checkpoint=tmp_path / "a.pt", **options)

    def stop_after_two(row: dict) -> None:
        if row["epoch"] == 2:
            raise Interrupt

    path = tmp_path / "b.pt"
    with pytest.raises(Interrupt):
        fit(make_model(), X, y, checkpoint=path, callback=stop_after_two, **options)
    assert load_checkpoint(path)["extra"]["epoch"] == 2
    # A fresh process would rebuild the model with other weights: resuming must not depend on them.
    resumed = fit(make_model(seed=99), X, y, checkpoint=path, **options)
    assert resumed.resumed_from == 2
    assert same_state(resumed.model, straight.model)
    assert strip_seconds(resumed.history) == strip_seconds(straight.history)


def test_one_epoch_then_two_equals_two_without_schedule(tmp_path) -> None:
    X, y = make_data(n=80)
    options = dict(batch_size=16, lr=1e-2, lr_schedule=None, progress=False)
    straight = fit(make_model(), X, y, epochs=2, **options)
    path = tmp_path / "c.pt"
    fit(make_model(), X, y, epochs=1, checkpoint=path, **options)
    resumed = fit(make_model(), X, y, epochs=2, checkpoint=path, **options)
    assert resumed.resumed_from == 1 and resumed.epochs == 2
    assert same_state(resumed.model, straight.model)
    # Nothing left to do: the checkpoint's model comes back unchanged.
    again = fit(make_model(seed=5), X, y, epochs=2, checkpoint=path, **options)
    assert again.resumed_from == 2 and same_state(again.model, straight.model)


def test_resume_refuses_other_settings_or_models_and_resume_false_restarts(tmp_path) -> None:
    X, y = make_data()
    path = tmp_path / "d.pt"
    fit(make_model(), X, y, epochs=1, checkpoint=path, progress=False)
    with pytest.raises(ValueError, match=r"other settings \(lr: 0.003 -> 0.01\)"):
        fit(make_model(), X, y, epochs=2, lr=1e-2, checkpoint=path, progress=False)
    with pytest.raises(ValueError, match="config"):
        fit(DeepShapNet(5, 3, channels=2, hidden=(8,)), X, y, epochs=2, checkpoint=path, progress=False)
    fresh = fit(make_model(), X, y, epochs=1, lr=1e-2, checkpoint=path, resume=False, progress=False)
    assert fresh.resumed_from == 0
    assert load_checkpoint(path)["extra"]["settings"]["lr"] == 1e-2
    shapnet.save(make_model(), path)  # a model file, not a training checkpoint
    with pytest.raises(ValueError, match="no training state"):
        fit(make_model(), X, y, epochs=1, checkpoint=path, progress=False)


# --------------------------------------------------------------------------- #
# evaluate, images, command line
# --------------------------------------------------------------------------- #
def test_evaluate_matches_manual_accuracy_and_ignores_batch_size() -> None:
    X, y = make_data()
    model = make_model()
    with torch.no_grad():
        manual = float((model(torch.from_numpy(X)).argmax(1).numpy() == y).mean())
    assert evaluate(model, X, y, 40) == pytest.approx(manual)
    assert evaluate(model, torch.from_numpy(X), torch.from_numpy(y), 1000) == pytest.approx(manual)
    with pytest.raises(ValueError, match="task"):
        evaluate(model, X, y, task="other")  # type: ignore[arg-type]


def test_fit_trains_a_vision_shapnet() -> None:
    from shapnet.datasets import load_dataset
    from shapnet.training import DIGITS_STAGES

    ds = load_dataset("digits", max_train=96)
    torch.manual_seed(0)
    model = VisionShapNet(1, 10, stages=DIGITS_STAGES[:2], image_size=8, readout_hidden=(16,))
    result = fit(model, ds.X_train, ds.y_train, epochs=4, batch_size=32, lr=1e-2, progress=False)
    assert result.history[-1]["loss"] < result.history[0]["loss"]
    assert result.history[-1]["train_acc"] > 0.25  # 10 classes, 12 steps: well above chance


TINY_STAGES = '[{"out_channels": 4, "dilation": 2, "hidden": [8]}]'


def test_cli_trains_digits_end_to_end(tmp_path, capsys) -> None:
    out = tmp_path / "run"
    # Tiny stages keep it fast; the default digits stages are covered by test_default_digits_model.
    argv = "--dataset digits --epochs 1 --max-train 100 --batch-size 50 --progress none --threads 1".split()
    argv += ["--out", str(out), "--readout-hidden", "8", "--stages", TINY_STAGES]
    result = main(argv)
    written = json.loads((out / "result.json").read_text())
    assert written["test_accuracy"] == pytest.approx(result["test_accuracy"])
    assert written["epochs"] == 1 and written["n_train"] == 100 and written["n_test"] == 450
    assert written["train_seconds"] > 0 and written["model"]["class"] == "VisionShapNet"
    model = shapnet.load(out / "model.pt")
    assert model.input_shape == (1, 8, 8)
    # The written accuracy is the saved model's accuracy on the test split, recomputed here.
    from shapnet.datasets import load_dataset

    ds = load_dataset("digits", max_train=100)
    with torch.no_grad():
        predicted = model(torch.as_tensor(ds.X_test).to(model.reference.dtype)).argmax(1).numpy()
    assert written["test_accuracy"] == pytest.approx(float((predicted == ds.y_test).mean()))
    lines = capsys.readouterr().out.strip().splitlines()
    assert json.loads(lines[0])["epoch"] == 1 and "test_accuracy" in json.loads(lines[-1])
    # Same command, more epochs: resumes from the checkpoint in --out.
    again = main([*argv[:3], "2", *argv[4:]])
    assert again["resumed_from"] == 1 and again["epochs"] == 2


def test_default_digits_model_covers_the_image() -> None:
    import argparse

    from shapnet.datasets import load_dataset
    from shapnet.train_cli import build_model

    ds = load_dataset("digits", max_train=10)
    args = argparse.Namespace(stages=None, prune=None, readout_hidden=None)
    model = build_model(ds, args).fit_reference(ds.X_train)
    assert isinstance(model, VisionShapNet) and model.input_shape == (1, 8, 8)
    # Dilations 1, 2, 4 of 2x2 windows: the corner pixel influences the opposite corner's output.
    x = torch.zeros(1, 1, 8, 8, requires_grad=True)
    model.explain(x + 0.5).values[0, 7, 7].sum().backward()
    assert float(x.grad.abs()[0, 0, 0, 0]) > 0


# --------------------------------------------------------------------------- #
# Distributed training
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("world", [1, 2, 3])
@pytest.mark.parametrize("n, batch_size", [(10, 4), (9, 3), (7, 8)])
def test_global_batch_sampler_deals_each_global_batch_out(world: int, n: int, batch_size: int) -> None:
    from shapnet.distributed import GlobalBatchSampler, World

    shares = []
    for rank in range(world):
        sampler = GlobalBatchSampler(n, batch_size, torch.Generator().manual_seed(3), World(rank, world))
        sampler.set_epoch(0)
        batches = list(sampler.global_batches())
        shares.append([b[rank::world].tolist() for b in batches])
        assert list(sampler) == [i for share in shares[-1] for i in share] and len(sampler) == len(
            list(sampler)
        )
    # Every rank sees the same global batches: a single process's permutation, cut into batch_size pieces.
    expected = torch.randperm(n, generator=torch.Generator().manual_seed(3)).split(batch_size)
    for step, batch in enumerate(expected):
        assert sorted(i for share in shares for i in share[step]) == sorted(batch.tolist())


DDP_SCRIPT = """
import sys
from shapnet.training import main

common = sys.argv[1:]
main([*common, "--max-train", "99", "--epochs", "1", "--out", "{out}/a"])
main([*common, "--max-train", "99", "--epochs", "2", "--out", "{out}/a"])  # resumes from the checkpoint
# 97 samples: rank 1's share of the last batch is empty
main([*common, "--max-train", "97", "--epochs", "1", "--out", "{out}/b"])
"""


def test_two_process_ddp_equals_one_process_and_resumes(tmp_path) -> None:
    import os
    import subprocess
    import sys
    from pathlib import Path

    # Float64, the consistency loss and an L1 penalty through the compiled Shapley convolutions; 99 samples
    # in batches of 16: the last batch splits 2 + 1 over the ranks (97: 1 + 0).
    common = "--dataset digits --batch-size 16 --dtype float64 --threads 1 --progress none".split()
    common += ["--readout-hidden", "8", "--consistency", "0.5", "--l1", "0.01", "--stages", TINY_STAGES]
    script = tmp_path / "ddp.py"
    script.write_text(DDP_SCRIPT.format(out=(tmp_path / "ddp").as_posix()))
    root = Path(shapnet.__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc-per-node",
            "2",
            str(script),
            *common,
        ],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = [json.loads(line) for line in done.stdout.splitlines() if '"test_accuracy"' in line]
    assert len(results) == 3  # only rank 0 reports

    def single(max_train: str, epochs: str, out: str) -> dict:
        return main([*common, "--max-train", max_train, "--epochs", epochs, "--out", str(tmp_path / out)])

    single("99", "1", "one_a")  # the same calls in one process: one epoch, then resumed to two
    for max_train, epochs, out, ddp_out in [("99", "2", "one_a", "a"), ("97", "1", "one_b", "b")]:
        reference = single(max_train, epochs, out)
        distributed = json.loads((tmp_path / "ddp" / ddp_out / "result.json").read_text())
        assert distributed["processes"] == 2 and reference["processes"] == 1
        one = load_checkpoint(tmp_path / out / "model.pt")["state_dict"]
        two = load_checkpoint(tmp_path / "ddp" / ddp_out / "model.pt")["state_dict"]
        assert one.keys() == two.keys() and two["bias"].dtype == torch.float64
        for name in one:
            torch.testing.assert_close(two[name], one[name], rtol=0, atol=1e-8, msg=f"{ddp_out} {name}")
        for row_one, row_two in zip(reference["history"], distributed["history"], strict=True):
            assert row_two["loss"] == pytest.approx(row_one["loss"], rel=1e-10)
            assert row_two["train_acc"] == pytest.approx(row_one["train_acc"])
        assert distributed["test_accuracy"] == pytest.approx(reference["test_accuracy"])
    assert json.loads((tmp_path / "ddp" / "a" / "result.json").read_text())["resumed_from"] == 1


# --------------------------------------------------------------------------- #
# The image reference as a rule
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("rule", ["mean", "min"])
def test_vision_reference_rule_comes_from_the_training_images_and_travels_in_checkpoints(
    tmp_path, rule
) -> None:
    from shapnet.datasets import load_dataset

    ds = load_dataset("digits", max_train=64)
    model = VisionShapNet(
        1, 10, stages=[{"out_channels": 4, "hidden": (8,)}], image_size=8, readout_hidden=(8,), reference=rule
    )
    x = torch.from_numpy(ds.X_test[:4])
    with pytest.raises(ValueError, match="fit_reference"):
        model.explain(x)
    fit(model, ds.X_train, ds.y_train, epochs=1, batch_size=32, progress=False, checkpoint=tmp_path / "c.pt")
    stat = ds.X_train.astype(np.float64).mean() if rule == "mean" else ds.X_train.min()
    torch.testing.assert_close(model.reference, torch.full((1, 8, 8), float(stat)))
    assert model.config["reference"] == rule and f"reference={rule!r}" in repr(model)
    loaded = shapnet.load(tmp_path / "c.pt")
    assert loaded.reference_rule == rule and torch.equal(loaded.reference, model.reference)
    torch.testing.assert_close(loaded.explain(x).values, model.explain(x).values)
    # Values given explicitly are kept; fit_reference leaves them alone.
    fixed = VisionShapNet(1, 10, stages=[Stage(4)], image_size=8, reference=-0.5).fit_reference(ds.X_train)
    assert "reference" not in fixed.config and bool((fixed.reference == -0.5).all())
    with pytest.raises(ValueError, match="'mean', 'min'"):
        VisionShapNet(1, 10, stages=[Stage(4)], image_size=8, reference="median")
    with pytest.raises(ValueError, match=r"shape \(N, 1, 8, 8\)"):
        model.fit_reference(ds.X_train[:, :, :4])


# --------------------------------------------------------------------------- #
# Command line: your own data, failing cleanly, progress
# --------------------------------------------------------------------------- #
def test_cli_trains_on_an_idx_folder_with_class_names(tmp_path, capsys, idx_block_images) -> None:
    folder = idx_block_images("shapes", size=6, n_classes=3, n_train=60, n_test=20)
    (folder / "classes.txt").write_text("top\nmiddle\nbottom\n")
    out = tmp_path / "run"
    argv = [
        "--dataset",
        str(folder),
        "--out",
        str(out),
        "--epochs",
        "2",
        "--batch-size",
        "20",
        "--threads",
        "1",
    ]
    argv += ["--readout-hidden", "8", "--stages", TINY_STAGES, "--reference", "min"]
    result = main(argv)
    written = json.loads((out / "result.json").read_text())
    assert written["dataset"] == "shapes" == result["dataset"]
    assert written["class_names"] == ["top", "middle", "bottom"] and written["n_train"] == 60
    assert written["reference"] == "min" and written["model"]["config"]["reference"] == "min"
    model = shapnet.load(out / "model.pt")
    assert model.input_shape == (1, 6, 6) and model.n_outputs == 3
    assert float(model.reference.max()) == pytest.approx(float(model.reference.min()))  # per channel
    assert float(model.reference.max()) < -0.3  # the black background, in standardised units
    # stderr is not a terminal here: progress comes as plain lines, for training and the test evaluation.
    err = capsys.readouterr().err
    assert "train" in err and "test" in err and "\r" not in err


@pytest.mark.parametrize("dataset", ["no_such_dataset", "missing.csv"])
def test_cli_bad_dataset_fails_in_one_line_and_leaves_nothing(tmp_path, capsys, dataset: str) -> None:
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                "--dataset",
                str(tmp_path / dataset) if "." in dataset else dataset,
                "--out",
                str(out),
                "--epochs",
                "1",
            ]
        )
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "Traceback" not in err[0]
    assert not out.exists()
