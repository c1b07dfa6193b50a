"""Why bf16 is or is not a lever on this CPU: TensorFlow's matmul throughput per dtype, measured."""

import contextlib
import os
import time

from leangraph._tfcheck import stderr_closed

_SIZE = 1024


def _tf_errors_hidden():
    """Where TF's log lines are hidden (TF_CPP_MIN_LOG_LEVEL >= 2, the command line's quiet
    mode), also hides the ERROR line oneDNN logs when it meets the probe's float16 ops: "oneDNN
    supports DT_HALF only on platforms with AVX-512", printed even on CPUs that have AVX-512.
    It is about this probe's own matmul, not the user's model, and says nothing the note
    does not."""
    level = os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0")
    if not level.isdigit() or int(level) < 2:
        return contextlib.nullcontext()
    return stderr_closed()


def matmul_gflops(dtypes=("float32", "bfloat16", "float16"), size=_SIZE, repeats=5):
    """{dtype: GFLOP/s} of a size³ TensorFlow matmul on this machine (best of `repeats`)."""
    import tensorflow as tf

    out = {}
    for name in dtypes:
        dtype = tf.as_dtype(name)
        with _tf_errors_hidden():
            a = tf.random.stateless_uniform((size, size), seed=(1, 2), dtype=tf.float32)
            a = tf.cast(a, dtype)
            fn = tf.function(lambda x: tf.linalg.matmul(x, x))
            fn(a).numpy()  # trace and warm up
            best = float("inf")
            for _ in range(repeats):
                start = time.perf_counter()
                fn(a).numpy()
                best = min(best, time.perf_counter() - start)
        out[name] = 2.0 * size ** 3 / best / 1e9
    return out


#: bf16 counts as a lever where its matmul runs at least this much faster than fp32's.
LEVER = 1.2


def bf16_note(bf16_ms, fp32_ms, rates=None):
    """One line for the report when bf16 lost to fp32, with the measured matmul throughputs.

    rates: {dtype: GFLOP/s} (default: measured now, matmul_gflops)."""
    rates = rates or matmul_gflops()
    bf16_ms, fp32_ms = (f"{ms:.1f}" if ms >= 1 else f"{ms:.2f}" for ms in (bf16_ms, fp32_ms))
    fp32, bf16, fp16 = rates["float32"], rates["bfloat16"], rates["float16"]
    measured = (f"this CPU's TensorFlow matmul runs at {fp32:.0f} GFLOP/s in fp32, {bf16:.0f} in "
                f"bf16 and {fp16:.0f} in fp16 ({_SIZE}³)")
    if bf16 >= LEVER * fp32:
        # The CPU has the lever; this model does not use it.
        return (f"bf16 is not faster for this model ({bf16_ms} ms vs fp32 {fp32_ms} ms), "
                f"though {measured}: its time goes to layers too small for bf16's throughput to "
                f"pay, or to the conversions and ops that stay in fp32")
    return (f"bf16 is not faster here ({bf16_ms} ms vs fp32 {fp32_ms} ms): {measured}, "
            f"so bf16 has no throughput advantage (it pays with AMX or on AMD Zen 4)")
