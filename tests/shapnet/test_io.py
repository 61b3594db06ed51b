"""save/load: config + weights, weights_only loading, clear errors for foreign files."""

from __future__ import annotations

import fractions

import pytest
import torch

import shapnet
from shapnet import DeepShapNet, Pruning, ShallowShapNet, Stage, VisionShapNet


@pytest.mark.parametrize(
    "model",
    [
        lambda: ShallowShapNet(5, 2, groups=[(0, 1), (2, 3, 4)], hidden=(4,), reference=torch.arange(5.0)),
        lambda: DeepShapNet(6, 3, channels=[4, 5], hidden=(8,), prune=Pruning(fraction=(0.5, None))),
        lambda: VisionShapNet(1, 3, stages=[Stage(4, hidden=(8,), dilation=2)], image_size=(6, 6), readout_hidden=(4,)),
    ],
)
def test_round_trip(model: object, tmp_path: object) -> None:
    original = model()
    path = tmp_path / "model.pt"
    shapnet.save(original, path, extra={"epoch": 3})
    loaded = shapnet.load(path)
    assert type(loaded) is type(original) and loaded.config == original.config
    x = torch.randn(4, *original.input_shape)
    torch.testing.assert_close(loaded(x), original(x), rtol=0, atol=0)
    torch.testing.assert_close(loaded.reference, original.reference)
    assert shapnet.io.load_checkpoint(path)["extra"] == {"epoch": 3}


def test_corrupt_checkpoint(tmp_path: object) -> None:
    path = tmp_path / "broken.pt"
    shapnet.save(DeepShapNet(4, 2), path)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ValueError, match="not a readable shapnet checkpoint"):
        shapnet.load(path)


def test_foreign_checkpoint(tmp_path: object) -> None:
    path = tmp_path / "other.pt"
    torch.save({"state_dict": {}}, path)
    with pytest.raises(ValueError, match="not a shapnet checkpoint.*format"):
        shapnet.load(path)
    path.write_text("hello")
    with pytest.raises(ValueError, match="not a readable shapnet checkpoint"):
        shapnet.load(path)


def test_unpicklable_payload_is_refused(tmp_path: object) -> None:
    path = tmp_path / "evil.pt"
    # weights_only=True refuses arbitrary classes, so nothing in the file gets executed.
    torch.save({"format": "shapnet-checkpoint", "obj": fractions.Fraction(1, 3)}, path)
    with pytest.raises(ValueError, match="not a readable shapnet checkpoint"):
        shapnet.load(path)


def test_missing_file(tmp_path: object) -> None:
    with pytest.raises(FileNotFoundError):
        shapnet.load(tmp_path / "nope.pt")
