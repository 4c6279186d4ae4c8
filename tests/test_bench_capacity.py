"""bench/experiments_capacity.py: its settings mean what docs/RESULTS.md says they mean."""

from __future__ import annotations

import numpy as np
import pytest
from _scripts import load_script


@pytest.fixture(scope="module")
def capacity():
    return load_script("bench/experiments_capacity.py")


def test_settings_start_from_the_shipped_defaults(capacity):
    assert capacity.parse_setting("logreg:C=0.03") == ("logreg", {"C": 0.03, "k_best": 1024})
    assert capacity.parse_setting("logreg") == ("logreg", {"C": 0.01, "k_best": 1024})
    assert capacity.parse_setting("svm:C=1") == ("svm", {"C": 1, "gamma": "scale"})
    with pytest.raises(SystemExit):
        capacity.parse_setting("logreg:gamma=1")
    with pytest.raises(SystemExit):
        capacity.parse_setting("mlp:C=1")


def test_k_best_zero_keeps_every_column(capacity):
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(60, 12)), np.repeat(np.arange(3), 20)
    X[:, 0] += y  # one informative column
    _, every = capacity.parse_setting("logreg:k_best=0")
    _, few = capacity.parse_setting("logreg:k_best=3")
    assert capacity.fit("logreg", every, X, y, 0).named_steps["select"].k == 12
    assert capacity.fit("logreg", few, X, y, 0).named_steps["select"].k == 3
    svm = capacity.fit("svm", capacity.parse_setting("svm")[1], X, y, 0)
    assert svm.predict_proba(X).shape == (60, 3)
