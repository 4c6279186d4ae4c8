import pytest

from ser.labels import ALL, CANONICAL, CORPUS_LABELS, canonical, parse_label_set


def test_default_label_set_is_the_seeds_six_in_order():
    assert parse_label_set(None) == ("angry", "disgust", "fear", "happy", "neutral", "sad")
    assert parse_label_set("default") == CANONICAL


def test_all_and_explicit_label_sets():
    assert parse_label_set("all") == ALL
    assert parse_label_set("sad, Angry,calm") == ("angry", "sad", "calm")
    assert parse_label_set(["fearful", "happiness"]) == ("fear", "happy")
    with pytest.raises(ValueError, match="unknown label 'joyful'"):
        parse_label_set("joyful")


@pytest.mark.parametrize(
    ("corpus", "code", "label"),
    [
        ("ravdess", "05", "angry"), ("ravdess", "02", "calm"), ("ravdess", "08", "surprise"),
        ("crema-d", "FEA", "fear"), ("tess", "Fear", "fear"),
        ("tess", "Pleasant_surprise", "surprise"), ("tess", "pleasant_surprised", "surprise"),
        ("savee", "sa", "sad"), ("savee", "su", "surprise"),
        ("emodb", "W", "angry"), ("emodb", "L", "boredom"), ("emodb", "T", "sad"),
    ],
)
def test_corpus_codes_map_to_canonical_labels(corpus, code, label):
    assert canonical(corpus, code) == label


def test_every_corpus_label_is_known():
    for table in CORPUS_LABELS.values():
        assert set(table.values()) <= set(ALL)
    assert canonical("ravdess", "99") is None
