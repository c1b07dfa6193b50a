"""What leangraph knows about the machine: the CPU's model and flags, the kernels they
select, the LEANGRAPH_FAKE_* switches that simulate another CPU, the CPU lists users
give, and the environment block every report records.

The switches exist so that tests and users can see the fallbacks on any machine:
LEANGRAPH_FAKE_NO_VNNI=1 (no 8-bit dot-product instructions), LEANGRAPH_FAKE_NO_INT8=1
(neither VNNI nor AVX2: no int8 kernel worth using) and LEANGRAPH_FAKE_NO_BF16=1 (no
native bf16; read by the C++ timer too).
"""

import functools
import os
import platform

from leangraph._tfcheck import load_native
from leangraph._version import __version__
from leangraph.errors import UsageError


#: The ISA extensions that change which kernels TensorFlow and oneDNN pick: two CPUs
#: that differ in one of these do not time the same graph alike.
ISA_FLAGS = ("avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
             "avx512_bf16", "avx512_fp16", "avx_vnni", "amx_tile", "amx_bf16", "amx_int8")


@functools.lru_cache(maxsize=1)
def _cpuinfo():
    """(model name or None, flags) of the first CPU in /proc/cpuinfo; empty where unreadable."""
    model, flags = None, frozenset()
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as handle:
            for line in handle:
                if line.startswith("model name") and model is None:
                    model = line.split(":", 1)[1].strip()
                elif line.startswith("flags") and not flags:
                    flags = frozenset(line.split(":", 1)[1].split())
                if model is not None and flags:
                    break
    except OSError:
        pass
    return model, flags


def cpu_flags():
    """The CPU's feature flags (a frozenset; empty where /proc/cpuinfo cannot be read)."""
    return _cpuinfo()[1]


def cpu_model():
    """The CPU's model name, or what the platform says, or 'unknown'."""
    return _cpuinfo()[0] or platform.processor() or "unknown"


def _faked(name):
    return os.environ.get(name, "") not in ("", "0")


def cpu_has_vnni():
    """True where the CPU has 8-bit dot-product instructions (AVX512_VNNI, AVX_VNNI or
    AMX-INT8); False under LEANGRAPH_FAKE_NO_VNNI or LEANGRAPH_FAKE_NO_INT8."""
    if _faked("LEANGRAPH_FAKE_NO_VNNI") or _faked("LEANGRAPH_FAKE_NO_INT8"):
        return False
    return bool(cpu_flags() & {"avx512_vnni", "avx_vnni", "amx_int8"})


def cpu_has_avx2():
    """True where the CPU has AVX2, on which oneDNN has 8-bit kernels without VNNI too;
    False under LEANGRAPH_FAKE_NO_INT8."""
    if _faked("LEANGRAPH_FAKE_NO_INT8"):
        return False
    return "avx2" in cpu_flags()


def cpu_supports_int8():
    """True where int8 is worth building here: oneDNN has 8-bit kernels for this CPU that
    beat fp32, with VNNI or with AVX2 alone (bench/results/2026-12-04-zen3-int8_bench.md).
    False under LEANGRAPH_FAKE_NO_INT8."""
    return cpu_has_vnni() or cpu_has_avx2()


def cpu_supports_bf16():
    """True where the CPU has AVX512_BF16 or AMX-BF16; False under LEANGRAPH_FAKE_NO_BF16.

    Asks the C++ timer (CPUID), so that the timer, which refuses bf16 on other CPUs,
    and the policy never disagree."""
    return bool(load_native().cpu_supports_bf16())


def parse_cpus(cpus, what="--cpus", available_only=True):
    """Sorted CPU ids from "0,1,4-5", an int, a list of ints, or None (None).

    available_only: every id must be one this process may run on (the C++ timer, which
    pins threads itself, makes that check in its own words). A bad list is a one-line
    UsageError that names `what`."""
    if cpus is None:
        return None
    if isinstance(cpus, bool):
        raise UsageError(f"{what}: expected CPU ids, got {cpus!r}")
    if isinstance(cpus, int):
        ids = [cpus]
    elif isinstance(cpus, str):
        ids = []
        for part in cpus.split(","):
            part = part.strip()
            if not part:
                continue
            first, sep, last = part.partition("-")
            try:
                lo = int(first)
                hi = int(last) if sep else lo
            except ValueError:
                raise UsageError(f"{what}: '{part}' is not a CPU id or a range like 0-3") from None
            if lo < 0 or hi < lo:
                raise UsageError(f"{what}: '{part}' is not a CPU id or a range like 0-3")
            ids.extend(range(lo, hi + 1))
    else:
        try:
            ids = [int(c) for c in cpus]
        except (TypeError, ValueError):
            raise UsageError(f"{what}: expected an int, a list of ints or a string like '0,1', "
                             f"got {cpus!r}") from None
    if not ids:
        raise UsageError(f"{what} names no CPU")
    if available_only and hasattr(os, "sched_getaffinity"):
        available = sorted(os.sched_getaffinity(0))
        unknown = sorted(set(ids) - set(available))
        if unknown:
            raise UsageError(
                f"{what}: CPU {', '.join(map(str, unknown))} is not available to this process "
                f"(available: {', '.join(map(str, available))})")
    return sorted(set(ids))


def environment(cpus=None, threads=None):
    """The block every report records: versions, the CPU, and the threads and CPUs used."""
    import tensorflow as tf

    env = {"leangraph": __version__, "tensorflow": tf.__version__}
    try:
        import keras

        env["keras"] = keras.__version__
    except ImportError:
        pass
    env["python"] = platform.python_version()
    env["cpu"] = cpu_model()
    env["isa"] = sorted(f for f in ISA_FLAGS if f in cpu_flags())
    env["logical cpus"] = os.cpu_count()
    if cpus:
        env["cpus used"] = ",".join(map(str, cpus))
    elif hasattr(os, "sched_getaffinity"):
        env["cpus used"] = ",".join(map(str, sorted(os.sched_getaffinity(0))))
    env["intra-op threads"] = threads if threads else "TensorFlow's default"
    return env
