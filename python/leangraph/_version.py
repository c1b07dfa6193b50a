"""Versions: leangraph's own, and the TensorFlow release its native code is bound to."""

__version__ = "0.1.0"

# The C++ declarations in native/tf_graph_transforms.h match this TF release
# line; pyproject.toml pins the same.
TF_SERIES = "2.21"
