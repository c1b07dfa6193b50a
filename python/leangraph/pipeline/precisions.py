"""Every precision a graph can be made in, in one ordered list: its name, how its outputs
are judged, whether this CPU runs it, how a graph is built in it, and how its name parses.

`tune` builds every trial through this list, `optimize` derives its variants from it
(the descriptors with a `variant` builder, in this order), and a shared study rebuilds
its best trial with it. It is an explicit tuple, not registration by decorator or by a
bottom-of-file import: the order is written here, and no module is imported for its side
effect. A new precision is one descriptor below.
"""

from dataclasses import dataclass
from typing import Callable, NamedTuple

import numpy as np

from leangraph import graphs, hardware
from leangraph.errors import LeangraphError, UsageError
from leangraph.pipeline.int8_variant import int8_variant
from leangraph.pipeline.variants import bf16_variant, failed_variant, quantize_weights_variant
from leangraph.precision import (
    bf16_graph,
    grappler_bf16_config,
    int8_graph,
    quantize_nodes,
    quantize_weights,
)
from leangraph.quantization import int8
from leangraph.quantization.int8 import DEFAULT_MIN_SQNR_DB


class Built(NamedTuple):
    """A graph made in a precision: the graph, the session ConfigProto it needs to run in that
    precision (None for most), and what the rewrite reported (int8's QuantizeResult)."""

    graph_def: object
    config: object = None
    result: object = None


def _no_bf16():
    if not hardware.cpu_supports_bf16():
        return ("this CPU has neither AVX512_BF16 nor AMX-BF16 (or LEANGRAPH_FAKE_NO_BF16 is "
                "set): bf16 would be emulated and slow")
    return None


def _no_int8():
    return None if int8.cpu_supports_int8() else int8.NO_INT8_CPU


def _always():
    return None


def _threshold(suffix):
    """int8's fallback threshold from its name's suffix: "" (plain int8) is the default,
    "@DB" a finite number of dB; None for anything else."""
    if suffix == "":
        return DEFAULT_MIN_SQNR_DB
    if not suffix.startswith("@"):
        return None
    try:
        value = float(suffix[1:])
    except ValueError:
        return None
    return value if np.isfinite(value) else None


@dataclass(frozen=True)
class Precision:
    """One precision.

    gate: "fp32" (every output within the relative tolerance of the original) or "top1"
    (changes numbers on purpose: each output's kind gate and SQNR). calibrated: its numbers
    come from calibration examples, so without held-out real examples its score is no
    verdict. build(graph_def, ends, calibration, param, **options) -> Built. unavailable()
    -> why this CPU cannot run it, or None. param(suffix) -> the parameter a name's suffix
    after `name` gives, None when the suffix is not this precision's (default: no suffix).
    variant: optimize's builder of its derived variant (BuildContext -> Variant or None);
    None where optimize does not derive one. result: optimize may return it (--precision).
    spelled: how its name is written for users where it takes a parameter; row: the name of
    optimize's report row for it, where that differs from its name.
    """

    name: str
    gate: str
    build: Callable
    calibrated: bool = False
    unavailable: Callable = _always
    param: Callable = None
    variant: Callable = None
    result: bool = False
    spelled: str = None
    row: str = None

    def available(self):
        return self.unavailable() is None

    def parse(self, text):
        """The Choice `text` names, or None when it is not this precision."""
        if not text.startswith(self.name):
            return None
        suffix = text[len(self.name):]
        if self.param is None:
            return Choice(self, text) if suffix == "" else None
        value = self.param(suffix)
        return None if value is None else Choice(self, text, value)


@dataclass(frozen=True)
class Choice:
    """A precision as asked for by name ("int8@25": int8 with its parameter)."""

    precision: Precision
    name: str
    param: object = None

    @property
    def lossy(self):
        return self.precision.gate != "fp32"

    def build(self, graph, ends, calibration=None, **options):
        """The graph in this precision (Built). ends: (input names, output names), which no
        rewrite renames or drops. calibration: one array per input (calibrated precisions)."""
        return self.precision.build(graphs.load_graph(graph), ends, calibration, self.param,
                                    **options)


def _fp32(graph, ends, calibration, param):
    return Built(graph)


def _bf16(graph, ends, calibration, param):
    return Built(bf16_graph(graph, ends)[0])


def _bf16_grappler(graph, ends, calibration, param):
    return Built(graph, grappler_bf16_config())


def _int8_weights(graph, ends, calibration, param):
    return Built(quantize_weights(graph, inputs=ends[0], outputs=ends[1]))


def _int8(graph, ends, calibration, min_sqnr_db, weight_bits=None):
    result = int8_graph(graph, ends, calibration, min_sqnr_db, weight_bits)
    return Built(result.graph_def, None, result)


def _int8_tf(graph, ends, calibration, param):
    return Built(quantize_nodes(graph, inputs=ends[0], outputs=ends[1]))


#: In order of how much they change the numbers (and of optimize's report).
PRECISIONS = (
    Precision("fp32", "fp32", _fp32, result=True),
    Precision("bf16", "top1", _bf16, unavailable=_no_bf16, variant=bf16_variant, result=True),
    Precision("bf16-grappler", "top1", _bf16_grappler, unavailable=_no_bf16),
    Precision("int8-weights", "top1", _int8_weights, variant=quantize_weights_variant,
              row="quantize_weights"),
    Precision("int8", "top1", _int8, calibrated=True, unavailable=_no_int8, param=_threshold,
              variant=int8_variant, result=True, spelled="int8, int8@DB"),
    Precision("int8-tf", "top1", _int8_tf, calibrated=True),
)


def known():
    """Every precision's name as a user spells it, in order."""
    return ", ".join(p.spelled or p.name for p in PRECISIONS)


def choose(name):
    """The Choice a precision name asks for; UsageError naming the known ones otherwise."""
    text = str(name).strip().lower()
    for precision in PRECISIONS:
        choice = precision.parse(text)
        if choice is not None:
            return choice
    raise UsageError(f"unknown precision '{name}'; known: {known()} (int8@DB: int8 with that "
                     "fallback threshold, in dB of output SQNR)")


def lossy(name):
    """Whether a precision name is one of the registry's that change numbers by rounding."""
    try:
        return choose(name).lossy
    except UsageError:
        return False


def result_names():
    """The precisions optimize may return (its --precision choices)."""
    return tuple(p.name for p in PRECISIONS if p.result)


def derived_variant(precision, ctx):
    """optimize's row for one precision of the registry, from the best fp32 graph: None when
    --precision leaves out a precision optimize may return; SKIPPED where this CPU cannot run
    it or no fp32 graph passed (said here for every precision, not in each builder); else
    what its builder makes, a FAILED row where that raises."""
    row = precision.row or precision.name
    if precision.result and not ctx.wants(precision.name):
        return None
    why = precision.unavailable()
    if why is None and ctx.best is None:
        why = "no fp32 graph variant passed"
    elif why is not None:
        why = f"{why}: fp32 is kept"
    if why is not None:
        return ctx.skipped(row, precision.name, f"{precision.name} of the best fp32 graph", why)
    try:
        return precision.variant(ctx)
    except (LeangraphError, ValueError) as exc:
        return failed_variant(row, "derived variant", f"building it failed: {exc}")


def build_derived(ctx):
    """optimize's derived variants, in the registry's order (derived_variant each)."""
    built = [derived_variant(p, ctx) for p in PRECISIONS if p.variant is not None]
    return [v for v in built if v is not None]
