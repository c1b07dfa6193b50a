"""leangraph's own version. The TensorFlow release it is bound to is recorded by the
build, in _build_info.py (see leangraph._tfcheck)."""

__version__ = "0.1.0"
