"""Exceptions raised by leangraph. The native module raises these classes too."""


class LeangraphError(Exception):
    """Base class of every error leangraph raises on purpose.

    code: the native status code (absl::StatusCode, as an int) when the error
    came from the C++ core, else None.
    """

    code = None


class UsageError(LeangraphError, ValueError):
    """An argument is out of range or does not fit the others (runs=0, an unknown name, ...)."""


class TransformError(LeangraphError, ValueError):
    """A transform string was refused, or a transform failed."""


class GraphError(LeangraphError, ValueError):
    """The graph itself is malformed, unsafe, or not what the operation needs."""


class BenchmarkError(LeangraphError, RuntimeError):
    """The timer could not load, feed or run a graph."""


class FreezeError(LeangraphError, ValueError):
    """A model could not be loaded or frozen."""


class UnsafeModelError(FreezeError):
    """Loading the model would run code stored in the file (e.g. a Keras Lambda)."""


class OutputError(LeangraphError, OSError):
    """A result could not be written (the folder is missing, read-only, full, ...)."""


class VersionError(LeangraphError, ImportError):
    """The installed TensorFlow is not the one leangraph was built against."""


class PruneError(LeangraphError, ValueError):
    """A model or its data cannot be pruned as asked (nothing was written)."""


class QuantizeError(LeangraphError, ValueError):
    """Calibration data, ranges or a graph that 8-bit quantization cannot use."""


class DataError(UsageError):
    """Data given to verify or calibrate on does not fit the model (a name, dtype, shape, NaN, ...)."""


class StorageError(LeangraphError):
    """A storage URL is malformed or unreachable, or a study cannot be used as asked."""


class MissingExtraError(LeangraphError, ImportError):
    """An optional feature was used without the extra that provides it."""
