"""Why bf16 is or is not a lever on this CPU: TensorFlow's matmul throughput per dtype, measured."""

import time

_SIZE = 1024


def matmul_gflops(dtypes=("float32", "bfloat16", "float16"), size=_SIZE, repeats=5):
    """{dtype: GFLOP/s} of a size³ TensorFlow matmul on this machine (best of `repeats`)."""
    import tensorflow as tf

    out = {}
    for name in dtypes:
        dtype = tf.as_dtype(name)
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


def bf16_note(bf16_ms, fp32_ms):
    """One line for the report when bf16 lost to fp32, with the measured matmul throughputs."""
    rates = matmul_gflops()
    return (f"bf16 is not faster here ({bf16_ms:.1f} ms vs fp32 {fp32_ms:.1f} ms): this CPU's "
            f"TensorFlow matmul runs at {rates['float32']:.0f} GFLOP/s in fp32, "
            f"{rates['bfloat16']:.0f} in bf16 and {rates['float16']:.0f} in fp16 "
            f"({_SIZE}³), so bf16 has no throughput advantage (it pays with AMX or on AMD Zen 4)")
