"""PixelLib's TensorFlow ``instance`` module is not part of this pixellib: importing it
raises an ``ImportError`` that says what to use instead (:mod:`pixellib.tensorflow_api`)."""
from pixellib.tensorflow_api import unavailable

raise unavailable(__name__)
