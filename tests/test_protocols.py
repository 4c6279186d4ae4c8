"""Protocols: no speaker crosses splits; the seed split is the seed's; folds cover all."""

import numpy as np
import pandas as pd
import pytest

from ser.protocols import (
    ProtocolError,
    apply_normalization,
    cross_corpus_splits,
    fit_normalization,
    kfold_speaker_splits,
    seed_splits,
    speaker_splits,
)


def manifest():
    rows = []
    for corpus, speakers in (("ravdess", 20), ("tess", 2), ("savee", 3)):
        for s in range(speakers):
            for i in range(6):
                rows.append({"corpus": corpus, "speaker_id": f"{corpus}:{s:02d}",
                             "label": ["angry", "sad"][i % 2]})
    return pd.DataFrame(rows)


def speakers(m, idx):
    return set(m["speaker_id"].to_numpy()[idx])


def assert_disjoint(m, split):
    tr, va, te = (speakers(m, getattr(split, p)) for p in ("train", "val", "test"))
    assert not tr & va and not tr & te and not va & te
    # every row is in exactly one part
    allrows = np.concatenate([split.train, split.val, split.test])
    assert len(allrows) == len(set(allrows.tolist()))


def test_speaker_split_keeps_speakers_apart_and_tests_each_corpus():
    m = manifest()
    (split,) = speaker_splits(m, seed=3)
    assert_disjoint(m, split)
    assert len(split.train) + len(split.val) + len(split.test) == len(m)
    assert set(m["corpus"].to_numpy()[split.test]) == {"ravdess", "tess", "savee"}
    assert len(speakers(m, split.val)) >= 1


def test_kfold_each_utterance_tested_once_and_validation_from_training_side():
    m = manifest()
    splits = kfold_speaker_splits(m, k=5, seed=1)
    assert len(splits) == 5
    tested = np.concatenate([s.test for s in splits])
    assert sorted(tested.tolist()) == list(range(len(m)))
    for s in splits:
        assert_disjoint(m, s)
        assert len(s.val) > 0


def test_kfold_needs_enough_speakers():
    m = pd.DataFrame({"corpus": "c", "speaker_id": ["c:1", "c:2", "c:3"], "label": "sad"})
    with pytest.raises(ProtocolError, match="at least 5 speakers"):
        kfold_speaker_splits(m, k=5)


def test_cross_corpus_tests_only_the_held_out_corpus():
    m = manifest()
    (split,) = cross_corpus_splits(m, ["savee"])
    assert set(m["corpus"].to_numpy()[split.test]) == {"savee"}
    assert "savee" not in set(m["corpus"].to_numpy()[np.concatenate([split.train, split.val])])
    assert_disjoint(m, split)
    with pytest.raises(ProtocolError, match="not in the data"):
        cross_corpus_splits(m, ["emodb"])


def test_seed_split_is_the_seed_notebooks_80_10_10():
    from sklearn.model_selection import train_test_split

    (split,) = seed_splits(1000)
    assert (len(split.train), len(split.val), len(split.test)) == (800, 100, 100)
    tr, rest = train_test_split(np.arange(1000), test_size=0.2, random_state=42, shuffle=True)
    te, va = train_test_split(rest, test_size=0.5, random_state=42, shuffle=True)
    assert set(split.test.tolist()) == set(te.tolist())
    assert set(split.val.tolist()) == set(va.tolist())


def test_normalization_statistics_come_from_the_rows_given():
    rng = np.random.default_rng(0)
    train = rng.normal(5, 2, (200, 3))
    mean, std = fit_normalization(train)
    np.testing.assert_allclose(mean, train.mean(0), rtol=1e-5)
    np.testing.assert_allclose(std, train.std(0), rtol=1e-5)
    z = apply_normalization(train, mean, std)
    np.testing.assert_allclose(z.mean(0), 0, atol=1e-4)
    # log-mel: per-band statistics over every frame of every clip, shaped (n_mels, 1)
    clips = [rng.normal(size=(4, n)) + np.arange(4)[:, None] for n in (10, 30)]
    mean, std = fit_normalization(clips)
    assert mean.shape == (4, 1)
    np.testing.assert_allclose(mean[:, 0], np.concatenate(clips, 1).mean(1), rtol=1e-5)
    # minmax (the seed) as mean=min, std=max-min
    mean, std = fit_normalization(train, kind="minmax")
    z = apply_normalization(train, mean, std)
    assert z.min() == pytest.approx(0, abs=1e-6) and z.max() == pytest.approx(1, abs=1e-5)
