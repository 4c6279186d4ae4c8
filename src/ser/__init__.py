"""ser — speech emotion recognition.

>>> import ser
>>> rec = ser.Recognizer.load()          # the bundled model
>>> rec.predict("clip.wav").label        # doctest: +SKIP
'angry'
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("ser")
except PackageNotFoundError:  # running from a source tree without install
    __version__ = "0.0.0"

from ser.audio import AudioError, load_audio
from ser.labels import CANONICAL

__all__ = ["AudioError", "CANONICAL", "Recognizer", "load_audio", "__version__"]


def __getattr__(name: str):
    # Recognizer pulls in onnxruntime; import it only when asked for.
    if name in ("Recognizer", "Prediction", "Segment"):
        from ser import inference

        return getattr(inference, name)
    raise AttributeError(f"module 'ser' has no attribute {name!r}")
