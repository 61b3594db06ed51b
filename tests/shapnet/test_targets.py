"""shapnet.targets: the one parser of ``target`` / ``targets`` / ``outputs`` for the core and the adapters."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from shapnet import check_output_indices, output_indices


@pytest.mark.parametrize(
    "target", [2, -1, np.int64(2), torch.tensor(2), torch.tensor([2]), np.array(2), np.array([-1])]
)
def test_one_index_for_every_row_is_an_int(target) -> None:
    assert output_indices(target, batch=4, n_outputs=3) == 2
    assert output_indices(target, batch=0, n_outputs=3) == 2  # checked and returned for an empty batch too


@pytest.mark.parametrize(
    "target",
    [[0, 2, -1, 1], (0, 2, -1, 1), np.array([0, 2, -1, 1]), torch.tensor([0, 2, -1, 1], dtype=torch.int32)],
)
def test_one_index_per_row_is_a_long_tensor_wrapped_into_range(target) -> None:
    indices = output_indices(target, batch=4, n_outputs=3)
    assert isinstance(indices, torch.Tensor) and indices.dtype == torch.long
    assert indices.tolist() == [0, 2, 2, 1]


def test_without_negative_indices() -> None:
    assert output_indices(2, 4, 3, negative=False) == 2
    with pytest.raises(ValueError, match=r"target must be in \[0, 3\) \(the model has 3 outputs\), got -1"):
        output_indices(-1, 4, 3, negative=False)
    with pytest.raises(ValueError, match=r"target entries must be in \[0, 3\).*got \[-1, 3\]"):
        output_indices([0, -1, 3, 1], 4, 3, negative=False)


@pytest.mark.parametrize(
    ("target", "error", "match"),
    [
        (3, ValueError, r"target must lie in \[-3, 2\] \(the model has 3 outputs\), got 3"),
        (-4, ValueError, r"must lie in \[-3, 2\]"),
        ([0, 1, 5, 0], ValueError, r"target entries must lie in \[-3, 2\].*got \[5\]"),
        (2**70, ValueError, "not an output index"),
        (True, TypeError, "must be an int, got a bool"),
        (1.5, TypeError, "must be an int, got float"),
        ("1", TypeError, "must be an int, got str"),
        ([0, 1, 2, 0.5], TypeError, r"target\[3\] must be an int"),
        (torch.zeros(4), TypeError, "integer indices"),
        (np.zeros(4), TypeError, "integer class indices"),
        (torch.tensor([True, False, True, False]), TypeError, "dtype torch.bool"),
        ([0, 1], ValueError, r"one index per row \(shape \(B,\) = \(4,\)\), got shape \(2,\)"),
        (torch.zeros(2, 2, dtype=torch.long), ValueError, "one index per row"),
        ([1], ValueError, "one index per row"),  # a sequence holds one index per row, even of length 1
    ],
)
def test_bad_targets_say_what_was_expected(target, error, match) -> None:
    with pytest.raises(error, match=match):
        output_indices(target, batch=4, n_outputs=3)


def test_names_in_messages() -> None:
    with pytest.raises(ValueError, match=r"entries of targets must lie in \[-3, 2\]"):
        output_indices(np.array([0, 3]), 2, 3, name="targets")
    with pytest.raises(ValueError, match="targets must hold one index or one index per row"):
        output_indices(np.array([0, 1]), 4, 3, name="targets")


def test_check_output_indices_keeps_the_shape() -> None:
    index = check_output_indices(np.array([[0, -1], [2, 1]]), 3, name="outputs")
    assert index.tolist() == [[0, 2], [2, 1]] and index.dtype == torch.long
    assert check_output_indices(-1, 3).dim() == 0 and int(check_output_indices(-1, 3)) == 2
    with pytest.raises(ValueError, match=r"entries of outputs must lie in \[-3, 2\]"):
        check_output_indices(np.array([[0, 3]]), 3, name="outputs")


@pytest.mark.parametrize(
    "indices",
    [np.array([0, 2**64 - 1], dtype=np.uint64), np.array([0, 200], dtype=np.uint8), torch.tensor([0, 200], dtype=torch.uint8)],
    ids=["uint64-max", "uint8-array", "uint8-tensor"],
)
def test_unsigned_indices_out_of_range_never_wrap(indices) -> None:
    """Unsigned indices are checked before the cast to int64, where 2**64 - 1 would become -1 (the last
    output)."""
    with pytest.raises(ValueError, match=r"must be in \[0, 4\)"):
        check_output_indices(indices, 4)
    assert check_output_indices(np.array([0, 3], dtype=np.uint64), 4).tolist() == [0, 3]
