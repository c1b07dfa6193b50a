"""8-bit compute: calibration and the int8 rewrite onto oneDNN's int8 kernels (VNNI, or AVX2 alone)."""

from leangraph.quantization.calibrate import METHODS, Calibration, calibrate
from leangraph.hardware import cpu_has_avx2, cpu_has_vnni, cpu_supports_int8
from leangraph.quantization.int8 import (
    LayerReport,
    QuantizeResult,
    quantize,
    quantized_units,
    sqnr_db,
)

__all__ = [
    "Calibration",
    "calibrate",
    "cpu_has_avx2",
    "cpu_has_vnni",
    "cpu_supports_int8",
    "LayerReport",
    "METHODS",
    "quantize",
    "QuantizeResult",
    "quantized_units",
    "sqnr_db",
]
