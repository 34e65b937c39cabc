"""Label maps: value counts and the mapping to internal labels, the few-values path against the general one."""

from __future__ import annotations

import numpy as np
import pytest

from braingui import labels as lab


def _general_counts(raw):
    return np.unique(raw, return_counts=True)


def _general_internal(raw, convention):
    table = lab.CONVENTIONS[convention]
    out = np.zeros(raw.shape, dtype=np.uint8)
    for value, name in table.items():
        out[raw == value] = lab._INTERNAL[name]
    return out


@pytest.mark.parametrize("values, dtype", [
    (values, dtype)
    for values in [(0, 1, 2, 4), (0, 1, 2, 3), (0, 3), (0,), (-2, 0, 1, 7), (0, 2, 4, 13)]
    for dtype in [np.int16, np.uint8, np.int64, np.uint16]
    if min(values) >= 0 or np.dtype(dtype).kind == "i"
])
def test_counts_and_internal_labels_of_a_few_valued_map(values, dtype):
    rng = np.random.default_rng(1)
    raw = rng.choice(np.array(values, dtype=dtype), size=(13, 11, 7), p=None)
    found, counts = lab.value_counts(raw)
    want_values, want_counts = _general_counts(raw)
    assert found.tolist() == want_values.tolist() and counts.tolist() == want_counts.tolist()
    for convention in (lab.BRATS, lab.MSD, lab.BRATS2023):
        out, unknown = lab.to_internal(raw, convention, found)
        assert out.dtype == np.uint8 and np.array_equal(out, _general_internal(raw, convention))
        table = lab.CONVENTIONS[convention]
        assert unknown == sorted(int(v) for v in set(raw.ravel().tolist()) if v != 0 and v not in table)


def test_many_valued_maps_take_the_general_path():
    """More distinct values than FEW_VALUES (an atlas): the same answers by bincount / unique and the table."""
    raw = np.arange(-5, 40, dtype=np.int32).repeat(3).reshape(5, 27)
    found, counts = lab.value_counts(raw)
    assert found.tolist() == list(range(-5, 40)) and set(counts.tolist()) == {3}
    out, unknown = lab.to_internal(raw, lab.BRATS, found)
    assert np.array_equal(out, _general_internal(raw, lab.BRATS))
    assert unknown == [v for v in range(-5, 40) if v not in (0, 1, 2, 4)]


def test_an_empty_map_has_no_values():
    found, counts = lab.value_counts(np.zeros((0, 3, 3), dtype=np.int16))
    assert found.size == 0 and counts.size == 0
