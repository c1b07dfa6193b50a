"""leangraph.quantization(): a calibrated 8-bit graph on oneDNN's int8 kernels, with per-layer fallback.

The rewrite itself is the native `quantize_int8` transform. This module decides
what it is given: the ranges (leangraph.calibrate), the layers left float
(`exclude`, the first and last layer on request, and every layer whose output
loses too much: its SQNR against the float graph, measured on the samples,
below `min_sqnr_db`), and it reports what ran in 8 bits.

The int8 ops are x86-64 oneDNN kernels of TensorFlow's CPU build; a graph using
them runs wherever that TensorFlow runs on x86-64, fastest with VNNI, and
faster than fp32 with AVX2 alone too. Without VNNI, oneDNN's Conv2D kernels add
pairs of u8*s8 products in 16 bits with saturation (vpmaddubsw), which 8-bit
weights on unsigned inputs overflow: a graph for such a CPU stores those convs'
weights in 7 bits (weight_bits=7, the default where this CPU lacks VNNI), and
an 8-bit one computes wrong values there.
"""

import math
from dataclasses import dataclass, field

import numpy as np

from leangraph import graphs, summary
from leangraph.errors import LeangraphError, QuantizeError
from leangraph.hardware import cpu_has_vnni, cpu_supports_int8
from leangraph.metrics import sqnr_db  # noqa: F401 - the one definition; Q.sqnr_db too
from leangraph.quantization import values
from leangraph.quantization.bias import _correct_biases, _with_biases, fitted_biases
from leangraph.quantization.calibrate import (
    Calibration,
    _Session,
    calibrate,
    example_count,
    input_feeds,
    take,
)
from leangraph.quantization.equalize import equalize as equalize_products
from leangraph.quantization.equalize import equalize_depthwise
from leangraph.quantization.prepare import (
    _CONTRACTIONS,
    batch_matmuls_as_matmuls,
    fold_constant_weights,
    output_heads,
)
from leangraph.quantization.runs import FloatValues, run_all
from leangraph.quantization.units import (  # noqa: F401 - QUANTIZED_OPS: Q.int8's too
    QUANTIZED_OPS,
    chain_ends,
    chain_inputs,
    depths,
    quantized_units,
    readers,
)
from leangraph.transform import transform


#: A layer whose output SQNR against the float graph falls below this goes back to float.
DEFAULT_MIN_SQNR_DB = 15.0
# Where a unit's 8-bit input or output must be converted from or to float, it
# saves about (1/fp32 rate - 1/int8 rate) per MAC and pays a QuantizeV2 or
# Dequantize per value, which pays from about 60-100 MACs per value (the rates:
# bench/results/2026-12-03-xeon-vnni-min_macs_per_conversion.md).
DEFAULT_MIN_MACS_PER_CONVERSION = 64.0


def int8_kernels():
    """Which of oneDNN's int8 kernels this CPU gets, in words (for reports)."""
    if cpu_has_vnni():
        return "VNNI (AVX512_VNNI, AVX_VNNI or AMX-INT8)"
    if cpu_supports_int8():
        return "AVX2, no VNNI (7-bit Conv2D weights)"
    return "none faster than fp32 (neither VNNI nor AVX2)"


#: What a CPU without 8-bit kernels worth using is told.
NO_INT8_CPU = ("this CPU has neither VNNI (AVX512_VNNI, AVX_VNNI, AMX-INT8) nor AVX2, so oneDNN "
               "has no 8-bit kernels for it that beat fp32")


def check_weight_bits(weight_bits):
    """weight_bits itself when it is 8 or 7; QuantizeError otherwise."""
    if weight_bits not in (7, 8) or isinstance(weight_bits, bool):
        raise QuantizeError(f"weight_bits must be 8 or 7, got {weight_bits!r}")
    return weight_bits


@dataclass
class LayerReport:
    name: str  # the float contraction
    op: str
    output: str  # the tensor the unit produces (its last node)
    precision: str  # "int8" or "fp32"
    reason: str = ""  # why it stayed float
    sqnr_db: float = None  # of its output against the float graph
    macs: int = 0

    def to_dict(self):
        return dict(self.__dict__)


@dataclass
class QuantizeResult:
    graph_def: object
    calibration: Calibration
    layers: list
    output_sqnr_db: float  # the graph's outputs against the float graph, on the samples
    int8_mac_share: float  # of conv/matmul multiply-accumulates
    min_sqnr_db: float
    rounds: int = 1
    weight_bits: int = 8  # of unsigned-input Conv2D weights (7: right without VNNI too)
    notes: list = field(default_factory=list)
    equalized: list = field(default_factory=list)  # convs whose SE product was equalized first
    bias_corrected: list = field(default_factory=list)  # 8-bit nodes whose bias was corrected

    @property
    def int8_layers(self):
        return [l for l in self.layers if l.precision == "int8"]

    @property
    def fallback_layers(self):
        return [l for l in self.layers if l.precision == "fp32"]

    def to_dict(self):
        return {
            "output_sqnr_db": self.output_sqnr_db,
            "int8_mac_share": self.int8_mac_share,
            "min_sqnr_db": self.min_sqnr_db,
            "rounds": self.rounds,
            "weight_bits": self.weight_bits,
            "equalized": list(self.equalized),
            "bias_corrected": list(self.bias_corrected),
            "calibration": {k: v for k, v in self.calibration.to_dict().items() if k != "ranges"},
            "layers": [l.to_dict() for l in self.layers],
            "notes": list(self.notes),
        }


def _macs_and_sizes(graph_def, imported=None):
    """({contraction: MACs per example}, {tensor "node:port": elements per example, when static}).

    imported: a tf.Graph of graph_def already imported (calibration's), used where no input's
    batch is open: summary._shape_graph would import the same graph again."""
    open_batch = any(n.op == "Placeholder" and not n.attr["shape"].shape.unknown_rank
                     and n.attr["shape"].shape.dim and n.attr["shape"].shape.dim[0].size < 0
                     for n in graph_def.node)
    tf_graph = summary._shape_graph(graph_def, 1) if open_batch or imported is None else imported
    macs, sizes = {}, {}
    for op in tf_graph.get_operations():
        if op.type in _CONTRACTIONS:
            macs[op.name] = int(summary._op_macs(op) or 0)
        for t in op.outputs:
            if t.shape.rank is not None and t.shape.is_fully_defined():
                sizes[t.name] = int(np.prod(t.shape.as_list()))
    return macs, sizes


def _conversion_costs(rewritten, graph_def, macs, sizes):
    """{contraction: MACs per float value converted for it} in a rewrite (inf: none converted).

    A unit pays for the QuantizeV2 that makes its input 8-bit (shared among the units that
    read it) and for the Dequantize that hands its output to float readers; a unit between
    8-bit neighbours pays nothing. The counts are of the float graph's tensors, per example."""
    units = quantized_units(rewritten)
    by_name = {n.name: n for n in rewritten.node}
    after = readers(rewritten)
    sources, ends = chain_inputs(graph_def), chain_ends(graph_def)
    out = {}
    for contraction, (op, name) in units.items():
        node = by_name[name]
        converted = 0.0
        producer = by_name.get(graphs.node_name(node.input[0]))
        if producer is not None and producer.op == "QuantizeV2":
            sharing = len({r.name for r in after.get(producer.name, []) if r.op in QUANTIZED_OPS})
            converted += sizes.get(sources.get(contraction, ""), 0) / max(1, sharing)
        if op != "_QuantizedMatMul" and any(r.op == "Dequantize" for r in after.get(name, [])):
            converted += sizes.get(ends.get(contraction, "") + ":0", 0)
        out[contraction] = macs.get(contraction, 0) / converted if converted else math.inf
    return out


def _first_and_last(graph_def, ends):
    """The contraction nearest the inputs and the one nearest the outputs, by graph depth."""
    if not ends:
        return []
    depth = depths(graph_def)
    ordered = sorted(ends, key=lambda n: depth.get(n, 0))
    return [ordered[0], ordered[-1]]


def _transform(graph_def, calibration, exclude, probes, inputs, outputs, weight_bits=8,
               shifts=False):
    if not calibration.ranges:
        # Nothing a unit could read was observed (no float contraction left).
        out = graphs.graph_pb2().GraphDef()
        out.CopyFrom(graph_def)
        return out
    params = [f'ranges="{calibration.to_param()}"']
    if exclude:
        params.append(f'exclude="{",".join(sorted(exclude))}"')
    if probes:
        params.append("probes=true")
        if shifts:  # the unsigned hand-overs as the graph will run them
            params.append("shifts=true")
    if weight_bits != 8:
        params.append(f"weight_bits={int(weight_bits)}")
    return transform(graph_def, f"quantize_int8({', '.join(params)})", inputs=inputs, outputs=outputs)


def quantize(graph, samples=None, *, calibration=None, method="minmax", exclude=(),
             exclude_first=False, exclude_last=False, min_sqnr_db=DEFAULT_MIN_SQNR_DB, max_rounds=4,
             check_samples=8, inputs=None, outputs=None, require_int8_cpu=True, progress=None,
             equalize=True, weight_bits=None, min_macs_per_conversion=None, bias_correction=True,
             float_heads=False):
    """Returns a QuantizeResult: the graph with its convolutions and matmuls in int8.

    graph: a frozen float GraphDef, best after the `deploy` recipe (batch norms
        folded, biases as BiasAdd). samples: calibration inputs (an array, or
        {input: array}, examples stacked on axis 0; or a list of {input: array},
        one example each, fed as it is: time-major sequences and other inputs
        that cannot be stacked); calibration: a Calibration made earlier instead.
    exclude: contraction (or output) names that stay float; exclude_first /
        exclude_last keep the layer nearest the input / the output float.
    float_heads: the layers that make an output (a conv or matmul whose result reaches an
        output through at most a bias and a softmax or sigmoid: prepare.output_heads) stay
        float. An 8-bit unit hands on its result rounded to 256 levels over its calibrated
        range; before a softmax that rounding flips classes nearly tied (a segmentation's
        edge pixels: 2.8 % of a U-Net's pixels), and a regression output is that rounding
        (the zoo's ink: max relative error 0.085, 0.032 with its head float;
        bench/results/2026-12-06-zen4-model_zoo.md).
    min_sqnr_db: a layer whose output SQNR against the float graph falls below
        this on the samples goes back to float, and the rewrite is redone (at
        most `max_rounds` times). None: no fallback.
    require_int8_cpu: refuse with QuantizeError on a CPU for which oneDNN has no
        8-bit kernels that beat float (neither VNNI nor AVX2: cpu_supports_int8).
    equalize: before calibrating on `samples`, rescale the channels of
        squeeze-and-excitation products into their convs' weights, and give each
        separable conv's depthwise channels one weight range, moved into the 1x1
        conv after it (leangraph.quantization.equalize); not done with a ready `calibration`,
        whose ranges are those of the graph as given.
    weight_bits: 8, or 7 for a graph that must compute right on CPUs without
        VNNI too (their Conv2D kernels saturate 8-bit weights; depthwise and
        matmul weights stay 8-bit). None: 8 where this CPU has VNNI, else 7,
        so the SQNR checks here measure what this CPU computes.
    bias_correction: take each 8-bit layer's mean error per output channel, measured
        on the check samples against the float graph, out of its bias (layer after
        layer, upstream first), and keep that where it improves the outputs' SQNR on
        the next check_samples samples (on the same ones where there are no more).
        (What it gains: bench/results/2026-12-03-xeon-amx-int8_bench-coverage.md.)
    min_macs_per_conversion: a unit whose float input must be quantized, or whose
        output dequantized for a float reader (a swish, GELU or multiply), stays
        float unless it does at least this many MACs per value converted: below it
        the conversions cost more than the 8-bit kernel saves (from 60-100 MACs by
        bench/results/2026-12-03-xeon-vnni-min_macs_per_conversion.md). None or 0: no such check, every unit that can run in
        8 bits does, and a note says how many convert at under 64 MACs per value.
        TensorFlow's 8-bit convs fuse no swish or GELU, so in swish networks the
        check makes int8 less slow, not faster (bench/results/2026-12-03-zen4-int8_bench.md).
    """
    if require_int8_cpu and not cpu_supports_int8():
        raise QuantizeError(NO_INT8_CPU)
    vnni = cpu_has_vnni()
    weight_bits = check_weight_bits((8 if vnni else 7) if weight_bits is None else weight_bits)
    graph_def = batch_matmuls_as_matmuls(fold_constant_weights(
        graph if hasattr(graph, "node") else graphs.load_graph(graph)))
    original = graph_def
    equalized, spread = [], []
    observed = None
    if calibration is None:
        if samples is None:
            raise QuantizeError("quantize needs calibration samples or a Calibration")
        if equalize:
            graph_def, equalized = equalize_products(graph_def, input_feeds(graph_def, samples))
            graph_def, spread = equalize_depthwise(graph_def)
    elif not isinstance(calibration, Calibration):
        raise QuantizeError("calibration must be a leangraph.Calibration")
    if outputs is None:
        outputs = graphs.default_outputs(graph_def)
    elif isinstance(outputs, str):
        outputs = [outputs]
    outputs = list(outputs)
    if calibration is None:
        # The float values of the check samples are kept from calibration's runs, in
        # calibration's session.
        observed = FloatValues(graph_def, original,
                               _check_tensors(graph_def, chain_ends(graph_def)), outputs)
        calibration = calibrate(graph_def, samples, method=method, progress=progress,
                                observer=observed.observing(max(1, int(check_samples))),
                                observed=observed.observed(), session=observed.session)
    if min_sqnr_db is not None and not math.isfinite(float(min_sqnr_db)):
        raise QuantizeError(f"min_sqnr_db must be a finite number, got {min_sqnr_db}")

    ends = chain_ends(graph_def)
    known = {n.name for n in graph_def.node}
    excluded = {}
    for name in exclude:
        if name not in known:
            raise QuantizeError(f"exclude names '{name}', which is not in the graph")
        excluded[name] = "excluded by the caller"
    frames = graphs.loop_frames(graph_def)
    for name in set(frames) & set(ends):
        excluded.setdefault(name, f"inside the while loop '{frames[name]}', left alone (one "
                                  "value per iteration, not calibrated)")
    for name in graphs.branch_nodes(graph_def) & set(ends):
        excluded.setdefault(name, "inside a cond branch (dead when not taken, not calibrated)")
    edges = _first_and_last(graph_def, ends)
    if exclude_first and edges:
        excluded.setdefault(edges[0], "first layer kept float (exclude_first)")
    if exclude_last and edges:
        excluded.setdefault(edges[-1], "last layer kept float (exclude_last)")
    if float_heads:
        for name, (output, activation) in output_heads(graph_def, outputs).items():
            excluded.setdefault(name, f"makes the logits of output '{output}': in 8 bits "
                                      "they would flip classes nearly tied" if activation else
                                f"makes output '{output}' itself: in 8 bits it would be "
                                "rounded to 256 levels of its range")

    check = None
    if samples is not None:
        feeds = input_feeds(graph_def, samples)
        checked = min(max(1, int(check_samples)), example_count(feeds))
        check = take(feeds, 0, checked)
        # Where there are more samples, a bias correction fitted on `check` is judged on others.
        held_out, held_out_start = take(feeds, checked, 2 * checked), checked
        if not example_count(held_out):
            held_out, held_out_start = check, 0
    float_values = None
    if check is not None:
        float_values = (observed or FloatValues(graph_def, original,
                                                _check_tensors(graph_def, ends), outputs)).use(check)
    macs, sizes = _macs_and_sizes(graph_def, float_values and float_values.imported())

    if min_macs_per_conversion:
        threshold = float(min_macs_per_conversion)
        if not math.isfinite(threshold) or threshold < 0:
            raise QuantizeError(f"min_macs_per_conversion must be a number >= 0, got "
                                f"{min_macs_per_conversion}")
        for _ in range(4):  # a unit gone float changes what its neighbours convert
            costs = _conversion_costs(
                _transform(graph_def, calibration, set(excluded), False, inputs, outputs,
                           weight_bits), graph_def, macs, sizes)
            slow = {c: v for c, v in costs.items() if v < threshold and c not in excluded}
            if not slow:
                break
            for c, v in slow.items():
                excluded[c] = (f"8-bit would not pay: {v:.0f} MACs per value converted "
                               f"to or from float (< {threshold:g})")

    rounds = 0
    sqnr = {}
    # Each round's layers are measured with their biases corrected (fitted anew: a
    # correction fitted downstream of a layer that then fell back would be wrong).
    while True:
        rounds += 1
        probe = _transform(graph_def, calibration, set(excluded), True, inputs, outputs, weight_bits)
        units = quantized_units(probe)
        if check is None or not units or min_sqnr_db is None:
            break
        if bias_correction:
            # Fitted on this probe and measured in the fit's session: the graph's own
            # offsets are fitted below.
            with fitted_biases(graph_def, probe, ends, check, float_values,
                               leave_to_readers=False) as (_, run):
                measured = _unit_sqnr(graph_def, probe, units, ends, float_values, run)
        else:
            measured = _unit_sqnr(graph_def, probe, units, ends, float_values,
                                  lambda names: run_all(probe, names, check, as_parts=True))
        sqnr.update({c: out for c, (_, out) in measured.items()})
        worst = _culprits(measured, float(min_sqnr_db))
        if not worst or rounds >= int(max_rounds):
            break
        for name in worst:
            into, out = measured[name]
            excluded[name] = (f"output SQNR {out:.1f} dB < {float(min_sqnr_db):g} dB "
                              f"(its input: {into:.1f} dB)")

    final = _transform(graph_def, calibration, set(excluded), False, inputs, outputs, weight_bits)
    corrected, bias_note = {}, None
    rewritten, session = None, None  # the result (merged), and a session of it if one is open
    if bias_correction and check is not None and quantized_units(final):
        probe = _transform(graph_def, calibration, set(excluded), True, inputs, outputs,
                           weight_bits, shifts=True)
        corrected = _correct_biases(graph_def, probe, ends, check, float_values)
        if corrected:
            # Kept where it helps the outputs, measured: a correction fitted on few
            # samples, or on a network that amplifies small shifts, can cost more.
            reference = float_values.reference(held_out, held_out_start)
            # Judged merged, as it is returned, in the session its check then runs in
            # (merging identical nodes changes no value).
            fixed = _merged(_with_biases(final, corrected), inputs, outputs)
            session = _Session(fixed)
            before, after = (min(sqnr_db(a, b) for a, b in
                                 zip(reference, run_all(g, outputs, held_out, session=own)))
                             for g, own in ((final, None), (fixed, session)))
            kept = after > before
            fitted = example_count(check)
            judged = ("the same samples" if held_out is check else
                      f"{example_count(held_out)} other sample(s)")
            bias_note = (f"bias correction: {len(corrected)} 8-bit layers' mean error per channel, "
                         f"fitted on {fitted} sample(s), taken out of their biases; on {judged} "
                         f"the outputs' SQNR is {after:.1f} dB with it against {before:.1f} dB "
                         "without: " + ("kept" if kept else "not kept"))
            if kept:
                rewritten = fixed
            else:
                corrected = {}
                session.close()
                session = None
    if rewritten is None:
        rewritten = _merged(final, inputs, outputs)
    units = quantized_units(rewritten)
    layers = []
    for name in sorted(ends, key=lambda n: -macs.get(n, 0)):
        node_op = next(n.op for n in graph_def.node if n.name == name)
        if name in units:
            layers.append(LayerReport(name, node_op, ends[name], "int8", "", sqnr.get(name), macs.get(name, 0)))
        else:
            reason = excluded.get(name) or "no pattern or range the int8 kernels take"
            layers.append(LayerReport(name, node_op, ends[name], "fp32", reason, sqnr.get(name), macs.get(name, 0)))
    total = sum(l.macs for l in layers)
    share = sum(l.macs for l in layers if l.precision == "int8") / total if total else 0.0

    output_sqnr = None
    if check is not None:
        reference = float_values.reference(check, 0)
        float_values.close()
        got = run_all(rewritten, outputs, check, session=session)
        output_sqnr = min(sqnr_db(a, b) for a, b in zip(reference, got))
    if session is not None:
        session.close()
    result = QuantizeResult(
        graph_def=rewritten,
        calibration=calibration,
        layers=layers,
        output_sqnr_db=output_sqnr,
        int8_mac_share=share,
        min_sqnr_db=min_sqnr_db,
        rounds=rounds,
        equalized=equalized,
        weight_bits=weight_bits,
        bias_corrected=sorted(corrected),
    )
    if bias_note:
        result.notes.append(bias_note)
    if spread:
        result.notes.append(f"{len(spread)} separable conv(s): the depthwise channels share one "
                            "weight range, their spread moved into the 1x1 conv after them")
    if not min_macs_per_conversion and units:
        costs = _conversion_costs(rewritten, graph_def, macs, sizes)
        slow = sum(1 for v in costs.values() if v < DEFAULT_MIN_MACS_PER_CONVERSION)
        if slow:
            result.notes.append(
                f"{slow} of {len(costs)} 8-bit layers convert their input or output from or to "
                f"float at under {DEFAULT_MIN_MACS_PER_CONVERSION:g} MACs per value (around "
                f"float ops such as swish, GELU or multiplies): the conversions can cost more "
                f"than 8 bits saves; min_macs_per_conversion={DEFAULT_MIN_MACS_PER_CONVERSION:g} "
                f"keeps such layers float")
    if weight_bits == 7:
        result.notes.append("unsigned-input Conv2D weights in 7 bits: without VNNI oneDNN's Conv2D "
                            "kernels saturate 8-bit ones" + ("" if vnni else " (this CPU has none)"))
    elif not vnni:
        result.notes.append("8-bit Conv2D weights on a CPU without VNNI: its Conv2D kernels saturate "
                            "them, so this graph's outputs here are not what a VNNI CPU computes")
    if equalized and output_sqnr is not None:
        # Measured, not assumed: the outlier channels' weights now set their output
        # channels' 8-bit scales, which can cost more than the product gains.
        plain = quantize(original, samples, method=method, exclude=exclude,
                         exclude_first=exclude_first, exclude_last=exclude_last,
                         min_sqnr_db=min_sqnr_db, max_rounds=max_rounds, check_samples=check_samples,
                         inputs=inputs, outputs=outputs, require_int8_cpu=False, equalize=False,
                         weight_bits=weight_bits, min_macs_per_conversion=min_macs_per_conversion,
                         bias_correction=bias_correction, float_heads=float_heads)
        versus = (f"{len(equalized)} squeeze-and-excitation product(s) equalized: output SQNR "
                  f"{output_sqnr:.1f} dB, against {plain.output_sqnr_db:.1f} dB without")
        if plain.output_sqnr_db >= output_sqnr:
            plain.notes.append(versus + "; kept without")
            return plain
        result.notes.append(versus)
    return result


def _merged(graph_def, inputs, outputs):
    """The rewrite with identical nodes made one (TensorFlow's merge_duplicate_nodes, then
    sort_by_execution_order): the zero biases of bias-free units, equal ranges, and the
    QuantizeV2 or pooling that two readers of one tensor each got. Graphs with functions
    or while loops are left as they are (the transform would not know their ops, or
    would merge the nodes of two frames)."""
    if graph_def.library.function or graphs.loop_nodes(graph_def):
        return graph_def
    try:
        return transform(graph_def, "merge_duplicate_nodes sort_by_execution_order",
                         inputs=inputs, outputs=outputs)
    except LeangraphError:
        return graph_def


def _check_tensors(graph_def, ends):
    """The float tensors the rounds and bias fits compare on the check samples: every unit's
    end and input, and the residual adds (and their Relu) a unit may end at as a Sum
    fusion; those a session can fetch."""
    loops = graphs.loop_nodes(graph_def) | graphs.branch_nodes(graph_def)
    at = set(ends.values())
    adds = [n.name for n in graph_def.node if n.op in ("Add", "AddV2")
            and any(graphs.node_name(i) in at for i in n.input)]
    adds += [n.name for n in graph_def.node if n.op in ("Relu", "Relu6") and n.input
             and graphs.node_name(n.input[0]) in adds]
    return list(dict.fromkeys(
        graphs.tensor_name(t)
        for t in list(ends.values()) + list(chain_inputs(graph_def).values()) + adds
        if graphs.node_name(t) not in loops))


def _unit_sqnr(graph_def, probe, units, ends, float_values, run):
    """{contraction: (SQNR of the tensor its unit reads, SQNR of its output)} against the float graph.

    float_values: a FloatValues of graph_def on the check samples; run(names): those tensors
    of the probe (its biases corrected, if any) on them, a values.Parts each."""
    sources = chain_inputs(graph_def)
    probe_names = {n.name for n in probe.node}
    names = []
    for c in units:
        for tensor in (sources.get(c), ends.get(c, "") + ":0"):
            if tensor and graphs.node_name(tensor) in probe_names and tensor not in names:
                names.append(tensor)
    reference = float_values.get(names)
    got = dict(zip(names, run(names)))
    measured = {}  # most units read what the one before them wrote: each tensor once

    def tensor_sqnr(tensor):
        if tensor not in measured:
            measured[tensor] = values.parts_sqnr_db(reference[tensor], got[tensor])
        return measured[tensor]

    out = {}
    for c in units:
        source, result = sources.get(c), ends.get(c, "") + ":0"
        if result not in reference:
            continue
        out[c] = (tensor_sqnr(source) if source in reference else math.inf, tensor_sqnr(result))
    return out


def _culprits(sqnr, threshold):
    """The units that take their output below `threshold`: those whose input is still above
    it; failing that, the one that loses most (so each round makes progress)."""
    below = {c: v for c, v in sqnr.items() if v[1] < threshold}
    if not below:
        return []
    first = [c for c, (into, _) in below.items() if into >= threshold]
    if first:
        return first
    return [max(below, key=lambda c: below[c][0] - below[c][1])]
