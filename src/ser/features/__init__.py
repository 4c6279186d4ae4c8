"""Feature sets (seed178 · logmel · egemaps) and cached, parallel extraction.

>>> from ser.features import get_feature_set
>>> fs = get_feature_set("seed178")
>>> fs.to_json()["config"]
{'sample_rate': 22050, 'offset': 0.6, 'duration': 2.5}
"""

from ser.features import egemaps, logmel, seed178  # noqa: F401  (register the sets)
from ser.features.base import (
    FeatureSet,
    FeatureSetError,
    feature_set_from_json,
    feature_set_names,
    get_feature_set,
)
from ser.features.extract import FeatureTable, extract, read_feature_table

__all__ = [
    "FeatureSet",
    "FeatureSetError",
    "FeatureTable",
    "extract",
    "feature_set_from_json",
    "feature_set_names",
    "get_feature_set",
    "read_feature_table",
]
