"""OpenVINO + NNCF's int8 of a frozen graph: the peer the int8 benches compare against, defined
once. It runs in a child process of the peers' Python (which has openvino and nncf, where
leangraph's has neither), so it is kept as source for that child: SOURCE defines
`nncf_int8(graph_path, calib)` and the benches put their own lines after it.

Used by bench/int8_bench.py (its accuracy and latency), bench/int8_profile.py (OpenVINO's
per-node profile) and bench/quantize_time.py (how long quantizing takes).
"""

SOURCE = r'''
def nncf_int8(graph, calib):
    """NNCF's post-training quantization, default arguments, of the frozen graph at path
    `graph` as OpenVINO converts it, calibrated on `calib` (an array, examples on axis 0,
    each fed alone). subset_size takes every example (the default, 300, takes all of 16)."""
    import nncf
    import openvino as ov

    return nncf.quantize(ov.convert_model(graph), nncf.Dataset([c[None] for c in calib]),
                         subset_size=len(calib))
'''


def child(body):
    """The source of a child that defines nncf_int8, then runs `body`."""
    return SOURCE + body
