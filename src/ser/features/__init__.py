"""Feature sets (seed178 · logmel · egemaps) and cached, parallel extraction.

>>> from ser.features import get_feature_set
>>> fs = get_feature_set("seed178")
>>> fs.to_json()["config"]
{'sample_rate': 22050, 'offset': 0.6, 'duration': 2.5}
"""

from typing import Any

from ser.features.base import (
    FeatureSet,
    FeatureSetError,
    feature_set_from_json,
    feature_set_names,
    get_feature_set,
)

# extract() needs pandas; imported on first use so inference does not pay for it.
_LAZY = {"FeatureTable", "extract", "read_feature_table"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from ser.features import extraction as module

        return getattr(module, name)
    raise AttributeError(f"module 'ser.features' has no attribute {name!r}")

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
