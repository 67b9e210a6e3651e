from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from tunebench.datasets import ArrayData, DataSpec, split_arrays
from tunebench_plugins.datasets.digits import Digits

SPEC = DataSpec((4, 4, 1), tuple("abc"))


def data(n=300, own_test=False):
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1, 2], [n // 2, n // 3, n - n // 2 - n // 3])
    x = rng.integers(0, 255, (n, 4, 4, 1), dtype=np.uint8)
    if own_test:
        return ArrayData(x, y, x_test=x[:30], y_test=y[:30])
    return ArrayData(x, y)


def test_splits_are_disjoint_complete_and_stratified():
    d = data()
    s = split_arrays(d, SPEC, seed=0, validation=0.2, test=0.2)
    assert s.sizes == {"train": 180, "validation": 60, "test": 60}
    for part in (s.y_train, s.y_val, s.y_test):
        shares = np.bincount(part, minlength=3) / len(part)
        np.testing.assert_allclose(shares, [0.5, 1 / 3, 1 / 6], atol=0.02)
    rows = {r.tobytes() for part in (s.x_train, s.x_val, s.x_test) for r in part}
    assert len(rows) == 300  # nothing duplicated, nothing lost
    assert s.x_train.dtype == np.uint8


def test_same_seed_same_split_other_seed_other_split():
    a, b, c = (split_arrays(data(), SPEC, seed=s) for s in (1, 1, 2))
    assert a.fingerprint == b.fingerprint
    np.testing.assert_array_equal(a.x_val, b.x_val)
    assert a.fingerprint != c.fingerprint


def test_own_test_set_is_kept_and_limit_subsamples():
    s = split_arrays(data(own_test=True), SPEC, seed=0, validation=0.25, limit=100)
    assert s.sizes == {"train": 75, "validation": 25, "test": 30}
    assert len(s.x_test) == 30


def test_fingerprint_is_identical_in_another_process():
    here = Digits().splits(3).fingerprint
    code = "from tunebench_plugins.datasets.digits import Digits; print(Digits().splits(3).fingerprint)"
    there = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert here == there


def test_digits_is_uint8_and_resizable():
    small = Digits().load()
    assert small.x.shape == (1797, 8, 8, 1) and small.x.dtype == np.uint8 and small.x.max() == 255
    big = Digits(size=16, channels=3)
    assert big.spec.input_shape == (16, 16, 3)
    assert big.load().x.shape == (1797, 16, 16, 3)


def test_class_weights_balance_the_training_split():
    s = split_arrays(data(), SPEC, seed=0)
    weights = s.class_weights()
    counts = np.bincount(s.y_train)
    assert weights[2] > weights[1] > weights[0]
    assert sum(weights[k] * counts[k] for k in range(3)) == pytest.approx(len(s.y_train))
