"""leangraph.optimize(): freeze, transform, verify, time and report, in one call.

A short driver over leangraph.pipeline, in the order the progress display shows:

1. load and freeze   any model form (pipeline.model) -> a clean frozen GraphDef
2. transform         TF's `tf-deploy` recipe, leangraph's recipe (default `deploy`)
3. verify            every variant against the reference (Keras `predict`, or the
                     frozen graph when there is no Keras model), each with its own
                     gate (pipeline.verify); then the variants derived from the best
                     fp32 graph (pipeline.precisions.DERIVED_VARIANTS: bf16, 8-bit
                     weights, ...), verified the same way
4. benchmark         every variant, side by side in this process (pipeline.timing)
5. report            optimized.pb, optimized_savedmodel/ (checked against the
                     variant's own gate; the next passing variant if it fails),
                     report.md, report.json, latency.png, moved into OUTDIR only
                     when all are complete (pipeline.outdir)

A FAILED variant is never written as the result.
"""

import json
import os
import shlex
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from leangraph import graphs, hardware
from leangraph import images as image_inputs
from leangraph.hardware import parse_cpus
from leangraph.errors import GraphError, LeangraphError, QuantizeError, TransformError, UsageError
from leangraph.pipeline.export import export_savedmodel, savedmodel_outputs, write_result
from leangraph.pipeline.outdir import (
    ARTIFACTS,
    Interrupted,
    check_outdir,
    commit,
    make_staging,
    sigterm_raises,
    signals_deferred,
)
from leangraph.pipeline.precisions import build_derived
from leangraph.pipeline.confirm import CONFIRM_MAX_TIME, CONFIRM_TARGET_CI
from leangraph.pipeline.progress import Progress
from leangraph.pipeline.timing import time_batch, time_rounds
from leangraph.pipeline.variants import (
    PASSED,
    SKIPPED,
    BuildContext,
    Variant,
    bf16_variant,
    failed_variant,
    graph_variant,
    rank_results,
    run_variant,
    select_result,
    transform_variant,
)
from leangraph.pipeline.verify import (
    FRAGILE_MARGIN,
    MIN_SQNR_DB,
    MIN_TOP1_AGREEMENT,
    compare_outputs,
    gate_failure,
    top1_margin,
    verify,
)
from leangraph.metrics import Gates
from leangraph.pipeline import evidence
from leangraph.pipeline.data import (
    DEFAULT_CALIBRATION_SAMPLES,
    DEFAULT_VERIFY_SAMPLES,
    PerExample,
    check_source,
)
from leangraph.report import OptimizeReport, render_json, render_latency_png, render_markdown

__all__ = [
    "ARTIFACTS", "DEFAULT_IMAGES", "DEFAULT_MODEL", "Interrupted", "OptimizeConfig",
    "compare_outputs", "export_savedmodel", "gate_failure", "optimize", "parse_cpus",
    "rank_results", "savedmodel_outputs", "select_result", "top1_margin",
]

# The names these pieces had when they lived here.
_commit = commit
_signals_deferred = signals_deferred

#: What optimize() uses when no model is given.
DEFAULT_MODEL = "keras.applications.Xception(weights=None)"
DEFAULT_MODEL_SIZE = 299
DEFAULT_SEED = 0
DEFAULT_IMAGES = 100
PRECISION_CHOICES = ("fp32", "bf16", "int8")
DEFAULT_PRECISIONS = ("fp32", "bf16", "int8")
# Keras runs the verification inputs in batches this small: a big model's activations
# for a batch of 16 at 299x299 take gigabytes.
_KERAS_BATCH = 4


def _bf16_variant(best, bench, ends, allow_io_ops=False):
    """bf16 of `best` (see pipeline.variants.bf16_variant)."""
    return bf16_variant(BuildContext(best=best, ends=ends, precisions=("fp32", "bf16"),
                                     allow_io_ops=allow_io_ops))


def _as_list(outputs, names):
    """Keras outputs (array, list or dict) as a list in the frozen graph's output order."""
    if isinstance(outputs, dict):
        if set(outputs) >= set(names):
            return [np.asarray(outputs[n]) for n in names]
        return [np.asarray(v) for v in outputs.values()]
    if isinstance(outputs, (list, tuple)):
        return [np.asarray(v) for v in outputs]
    return [np.asarray(outputs)]



def _keras_x(examples, start=0, stop=None):
    parts = [x[start:stop] for x in examples]
    return parts[0] if len(parts) == 1 else parts



def _parse_precisions(precisions):
    if isinstance(precisions, str):
        precisions = [p for p in precisions.split(",")]
    chosen = [str(p).strip().lower() for p in precisions if str(p).strip()]
    unknown = [p for p in chosen if p not in PRECISION_CHOICES]
    if unknown or not chosen:
        raise UsageError(
            f"--precision: unknown precision {', '.join(unknown) or '(none given)'}; "
            f"choose from {', '.join(PRECISION_CHOICES)}"
        )
    return tuple(dict.fromkeys(chosen))



def _positive_int(value, what):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise UsageError(f"{what} must be a positive integer, got {value!r}")
    return int(value)



def _load_model(model, unsafe, progress, signature=None, input_shapes=None, weights=None,
                ends=None, batch_size=1):
    """A pipeline.model.Model for any form; None means the embedded default."""
    from leangraph.pipeline.model import Model, load_model

    if model is None:
        import keras

        # Seeded so a rerun (and the reproduce commands) get the same random weights.
        keras.utils.set_random_seed(DEFAULT_SEED)
        progress.note(f"no MODEL given: using the embedded default, {DEFAULT_MODEL}, "
                      f"{DEFAULT_MODEL_SIZE}×{DEFAULT_MODEL_SIZE}×3, seeded random weights")
        km = keras.applications.Xception(weights=None,
                                         input_shape=(DEFAULT_MODEL_SIZE, DEFAULT_MODEL_SIZE, 3))
        loaded = load_model(km, batch_size=1)
        return Model(frozen=loaded.frozen, keras_model=km,
                     label=f"Keras Xception ({DEFAULT_MODEL_SIZE}×{DEFAULT_MODEL_SIZE}, "
                           "weights=None)")
    return load_model(model, unsafe=unsafe, signature=signature, batch_size=batch_size,
                      input_shapes=input_shapes, weights=weights, **(ends or {}))



def _describe_inputs(frozen):
    return ", ".join(f"{t.name} {t.dtype}[{t.shape_text()}]" for t in frozen.inputs)



def _make_inputs(frozen, keras_model, count, preprocessing, notes):
    """Invented inputs: (list of arrays, one per graph input, N examples each; description;
    preprocessing mode)."""
    from leangraph.freezing.shapes import require_known_shapes

    require_known_shapes(frozen.inputs)
    images = [_is_image(info) for info in frozen.inputs]
    mode = evidence.preprocessing_mode(preprocessing, keras_model)
    if not preprocessing and any(images):
        _unknown_family(keras_model, mode, notes)
    arrays = []
    for i, info in enumerate(frozen.inputs):
        try:
            numeric = np.dtype(info.dtype).kind in "biuf"
        except TypeError:
            numeric = False
        if not numeric:
            raise UsageError(
                f"input '{info.name}' takes {info.dtype} values ({_describe_inputs(frozen)}): "
                "optimize makes and loads numeric inputs only; export a signature that takes "
                "the decoded tensor (e.g. the image after decode_jpeg and resize)")
        if images[i]:
            arrays.append(image_inputs.random_images(info.shape, count, mode,
                                                     seed=DEFAULT_SEED + i))
        else:
            arrays.append(image_inputs.random_inputs(info.shape, info.dtype, count,
                                                     seed=DEFAULT_SEED + i))
    if all(images):
        what = f"seeded random pixels, preprocessing {mode}"
    elif any(images):
        what = f"seeded random pixels (preprocessing {mode}) and seeded random values"
    else:
        what = "seeded random values (floats in [-1, 1], integers in [0, 10))"
    return arrays, what, mode


def _unknown_family(keras_model, mode, notes):
    name = getattr(keras_model, "name", None)
    if image_inputs.family_preprocessing(name) is None:
        # Raw 0..255 pixels would saturate most models and hide differences.
        notes.append(f"no known preprocessing for model '{name}': image inputs are "
                     f"scaled to [-1, 1] ({mode} mode); pass --preprocess NAME to choose")


def _is_image(info):
    """Whether optimize makes an input's examples as images: float NHWC with 1 or 3 channels."""
    shape = info.shape
    try:
        floating = np.issubdtype(np.dtype(info.dtype), np.floating)
    except TypeError:
        return False
    return shape is not None and len(shape) == 4 and shape[-1] in (1, 3) and floating



def _model_ends(ends):
    """--inputs, --outputs and --feed as the report keeps them: 'a,b' and {name: value}."""
    from leangraph.freezing.graphdef import split_names
    from leangraph.freezing.placeholders import parse_feeds

    kept = {key: ",".join(split_names(ends.get(key)) or []) or None
            for key in ("inputs", "outputs")}
    kept["feeds"] = {k: str(v) for k, v in parse_feeds(ends.get("feeds")).items()} or None
    return kept


def _reproduce_commands(model, outdir, settings, result):
    quote = shlex.quote
    cmd = ["leangraph", "optimize"]
    if model is not None:
        cmd.append(str(model))
    cmd += ["-o", str(outdir), "--recipe", settings["recipe"],
            "--precision", ",".join(settings["precisions"])]
    if settings["data"]:
        cmd += ["--data", str(settings["data"])]
    else:
        cmd += ["--images", str(settings["images"])]
    if settings.get("preprocess"):
        cmd += ["--preprocess", settings["preprocess"]]
    cmd += ["--runs", str(settings["runs"])]
    if settings["threads"]:
        cmd += ["--threads", str(settings["threads"])]
    if settings["cpus"]:
        cmd += ["--cpus", ",".join(map(str, settings["cpus"]))]
    cmd += ["--tolerance", f"{settings['tolerance']:g}"]
    if settings["unsafe"]:
        cmd.append("--unsafe")
    ends = settings.get("model_ends") or {}
    for key in ("inputs", "outputs"):
        if ends.get(key):
            cmd += [f"--{key}", ends[key]]
    for name, value in (ends.get("feeds") or {}).items():
        cmd += ["--feed", f"{name}={value}"]
    lines = ["# the whole run", " ".join(quote(c) for c in cmd)]
    if result is not None and result.kind == "graph":
        bench = ["leangraph-bench", "--graph", str(Path(outdir) / "optimized.pb"),
                 "--runs", str(settings["runs"])]
        if settings["threads"]:
            bench += ["--intra-op-threads", str(settings["threads"])]
        if settings["cpus"]:
            bench += ["--cpus", ",".join(map(str, settings["cpus"]))]
        if result.bench_precision != "fp32":
            bench += ["--precision", result.bench_precision]
        lines += ["# time the result alone", " ".join(quote(c) for c in bench)]
        if model is not None and result.name == "frozen":
            lines += ["# the result step by step",
                      f"leangraph freeze {quote(str(model))} -o optimized.pb"
                      + (" --unsafe" if settings["unsafe"] else "")]
        elif model is not None and result.transform:
            frozen = "frozen.pb"
            lines += ["# the result step by step",
                      f"leangraph freeze {quote(str(model))} -o {frozen}"
                      + (" --unsafe" if settings["unsafe"] else "")]
            source = frozen
            if result.base and result.base not in ("frozen",):
                base_transform = settings["transforms"].get(result.base)
                if base_transform:
                    lines.append(f"leangraph transform --in_graph {frozen} "
                                 f"--out_graph {result.base}.pb "
                                 f"--transforms {quote(base_transform)}")
                    source = f"{result.base}.pb"
            lines.append(f"leangraph transform --in_graph {source} --out_graph optimized.pb "
                         f"--transforms {quote(result.transform)}")
    return lines



def optimize(model=None, outdir="leangraph-optimized", recipe="deploy", precisions=DEFAULT_PRECISIONS,
             images=None, image_dir=None, preprocess=None, threads=None, cpus=None,
             tolerance=1e-4, unsafe=False, runs=None, warmup=None, rounds=None, progress=True,
             extra_variants=None, allow_io_ops=False, signature=None, batch=None,
             calibration_dir=None, input_shapes=None, weights=None, baseline=None,
             int8_weight_bits=None, data=None, calibration_data=None,
             verify_samples=DEFAULT_VERIFY_SAMPLES, calibration_samples=DEFAULT_CALIBRATION_SAMPLES,
             output_kinds=None, gates=None, max_accuracy_drop=0.5, max_mae_increase=0.1,
             inputs=None, outputs=None, feeds=None):
    """Freezes a model, transforms it, verifies and times every variant, writes the result.

    model: any form leangraph.load_model() takes (a keras.Model, a `.keras`,
        `.h5` or architecture-`.json` path, a SavedModel directory, a frozen
        `.pb`/`.pbtxt`, a GraphDef, a tf.function); None uses the embedded
        default, keras.applications.Xception(weights=None) at 299x299 with
        seeded random weights. With a Keras model, Keras `predict` is the
        reference and the Keras rows are timed; otherwise the frozen graph is.
    signature: the SavedModel signature (default serving_default).
    input_shapes / weights: as for leangraph.freeze(): shapes for inputs the model
        leaves open (besides the batch), the weights of an architecture `.json`.
    inputs / outputs / feeds: as for leangraph.freeze(): the graph's ends (a TF1
        checkpoint needs `outputs`) and scalar placeholders frozen to a value.
    batch: also time every graph variant at this batch size (latency and
        throughput in the report), besides batch 1.
    outdir: where optimized.pb, optimized_savedmodel/, report.md, report.json and
        latency.png go. Everything is first written to a temporary folder beside
        OUTDIR and moved in by rename once complete, so an interrupt (SIGINT,
        SIGTERM) leaves no partial file in OUTDIR. The input model is never
        written; an OUTDIR that would overwrite it is refused.
    recipe: leangraph's recipe to apply (leangraph.RECIPES), besides TF's
        `tf-deploy` which is always measured for comparison.
    precisions: "fp32" and/or "bf16" (a list or "fp32,bf16"): which precisions
        may become the result. bf16 is measured only where the CPU supports it:
        with the `to_bfloat16` transform when it is registered, else with the
        timer's precision="bf16" (Grappler's oneDNN bf16 rewrite at run time,
        which is a session setting, so that variant is reported but optimized.pb
        stays an fp32 graph). "int8": leangraph.quantize of the best fp32 graph
        (oneDNN's int8 kernels; measured only where the CPU has VNNI or AVX2), calibrated
        on `calibration_dir`'s images (same preprocessing), else on the
        verification inputs. int8_weight_bits: of Conv2D weights on unsigned
        inputs; None: what this CPU computes right (8 with VNNI, else 7); 7: a
        graph right on any CPU with AVX2 or VNNI (build on a VNNI machine for
        servers without it). bf16 and int8 are gated on top-1 agreement, or on
        output SQNR when the reference's top-1 margin is too small to mean
        anything (random weights).
    images: how many inputs every variant is verified on: seeded random pixels
        (default 100), or the first N files of image_dir (default all).
        image_dir: a folder of JPEG/PNG images, resized to the model input.
        preprocess: a preprocessing mode or model family (see leangraph.images),
        by default the model family's.
    threads / cpus: the timer's intra-op threads and CPU pinning ("0,1" or a
        list); Keras rows run in this process, pinned to the same CPUs.
    tolerance: the fp32 gate, a max relative difference (see compare_outputs).
    runs: timed runs per variant (default: the number of inputs, one per input as the seed
        averaged over its images); warmup: untimed runs before each round;
        rounds: the runs are split into this many rounds, and each round times
        every variant in turn (rotating the order), so drift on a shared
        machine spreads over all of them.
    extra_variants: {name: fn(frozen GraphDef) -> GraphDef}, further fp32 graph
        variants verified and timed like the built-in ones (e.g. an
        experimental transform; the tests use it for a deliberately wrong one).

    baseline: the model MODEL was made from (any form load_model() takes), e.g.
        the original that `leangraph prune` pruned; by default the `source` a
        prune report.json beside MODEL names. Its frozen graph is timed against
        MODEL's, and each further step (the recipe, then int8 or bf16) against
        the one before, in interleaved pairs in this run: the report gives each
        step's speed-up, their product, and the end-to-end speed-up measured.

    data: the examples every variant is verified on (any form
        pipeline.data.read takes: .npz, .npy, a folder of images or of
        one-example .npy/.npz files, arrays, a dict, a tf.data.Dataset);
        image_dir is its old name. With 32 or more examples, max(16, N/4) of
        them (at most verify_samples) are held out with a seeded split and
        every variant is gated on those; int8 is calibrated on up to
        calibration_samples of the rest, or on calibration_data
        (calibration_dir is its old name). Without data the inputs are
        invented and int8 is timed but never the result.
    output_kinds / gates: {output: kind} (classes, binary, multilabel,
        regression) overriding the kind read from the producing op, and
        {output: "VALUE" or "GATE:VALUE"} thresholds (see leangraph.metrics).
    max_accuracy_drop (points) / max_mae_increase (relative): with labels,
        how much a lossy variant may lose against the reference.

    Returns an OptimizeReport. Raises UsageError (a ValueError) for bad
    arguments, FreezeError for a model that cannot be loaded; an Interrupted
    (a KeyboardInterrupt) when a signal stops the run.
    """
    precisions = _parse_precisions(precisions)
    flags = ("--image-dir" if image_dir is not None else "--data",
             "--calibration-dir" if calibration_dir is not None else "--calibration-data")
    data, calibration_data = _aliases(data, image_dir, calibration_data, calibration_dir)
    if data is None and precisions == ("int8",):
        raise UsageError("--precision int8 needs real examples to calibrate and verify on: "
                         "give --data")
    verify_samples = _positive_int(verify_samples, "--verify-samples")
    calibration_samples = _positive_int(calibration_samples, "--calibration-samples")
    if images is not None:
        images = _positive_int(images, "--images")
    elif data is None:
        images = DEFAULT_IMAGES
    if runs is not None:
        runs = _positive_int(runs, "--runs")
    if not (isinstance(tolerance, (int, float)) and np.isfinite(tolerance) and tolerance > 0):
        raise UsageError(f"--tolerance must be a positive number, got {tolerance!r}")
    if threads is not None:
        threads = _positive_int(threads, "--threads")
    cpus = parse_cpus(cpus)
    if rounds is not None:
        rounds = _positive_int(rounds, "rounds")
    outdir = Path(outdir)
    model_path = Path(model) if isinstance(model, (str, os.PathLike)) else None
    check_outdir(outdir, model_path)
    for given, what in zip((data, calibration_data), flags):
        check_source(given, what)  # before the slow steps
    if preprocess:
        image_inputs.resolve_preprocessing(preprocess)
    if int8_weight_bits is not None:
        from leangraph.quantization.int8 import check_weight_bits

        try:
            check_weight_bits(int8_weight_bits)
        except QuantizeError as exc:
            raise UsageError(f"--int8-weight-bits: {exc}") from None
    baseline, baseline_note = _baseline(baseline, model_path)
    from leangraph import bench, recipes

    recipes.check_name(recipe, "--recipe")
    if batch is not None:
        batch = _positive_int(batch, "--batch")
        batch = None if batch == 1 else batch

    saved_affinity = os.sched_getaffinity(0) if cpus and hasattr(os, "sched_setaffinity") else None
    with sigterm_raises(), Progress(progress) as prog:
        try:
            if saved_affinity is not None:
                # Threads TF starts from now on inherit this, so the Keras rows run on the
                # same CPUs as the timer pins the graph variants to.
                os.sched_setaffinity(0, cpus)
            config = OptimizeConfig(
                model=model, model_path=model_path, outdir=outdir, recipe=recipe,
                precisions=precisions, images=images, image_dir=image_dir,
                preprocess=preprocess, threads=threads, cpus=cpus, tolerance=float(tolerance),
                unsafe=unsafe, runs=runs, warmup=warmup, rounds=rounds,
                extra_variants=extra_variants or {}, allow_io_ops=allow_io_ops,
                signature=signature, batch=batch, calibration_dir=calibration_data,
                input_shapes=input_shapes, weights=weights, baseline=baseline,
                baseline_note=baseline_note, int8_weight_bits=int8_weight_bits,
                data=data, verify_samples=verify_samples, data_flags=flags,
                calibration_samples=calibration_samples, output_kinds=output_kinds,
                gates=gates, max_accuracy_drop=float(max_accuracy_drop),
                max_mae_increase=float(max_mae_increase),
                model_ends={"inputs": inputs, "outputs": outputs, "feeds": feeds})
            return _pipeline(config, bench, recipes, prog)
        finally:
            if saved_affinity is not None:
                os.sched_setaffinity(0, saved_affinity)



def _set_keras_threads(threads, notes):
    if not threads:
        return
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:
        notes.append(f"the Keras rows use TensorFlow's default thread count: TensorFlow was "
                     f"already initialised in this process, so --threads {threads} could not "
                     "apply to them")



@dataclass
class OptimizeConfig:
    """optimize()'s settings, checked (see optimize() for what each means)."""

    model: object
    outdir: Path
    model_path: Path = None
    recipe: str = "deploy"
    precisions: tuple = DEFAULT_PRECISIONS
    images: int = None
    image_dir: object = None
    preprocess: str = None
    threads: int = None
    cpus: list = None
    tolerance: float = 1e-4
    unsafe: bool = False
    runs: int = None
    warmup: int = None
    rounds: int = None
    extra_variants: dict = field(default_factory=dict)
    allow_io_ops: bool = False
    signature: str = None
    batch: int = None
    calibration_dir: object = None
    input_shapes: object = None
    weights: object = None
    baseline: object = None
    baseline_note: str = None
    int8_weight_bits: int = None
    data: object = None
    #: the names the user gave the data and calibration data by (old or new)
    data_flags: tuple = ("--data", "--calibration-data")
    verify_samples: int = DEFAULT_VERIFY_SAMPLES
    calibration_samples: int = DEFAULT_CALIBRATION_SAMPLES
    output_kinds: object = None
    gates: object = None
    max_accuracy_drop: float = 0.5
    max_mae_increase: float = 0.1
    #: inputs=, outputs= and feeds= for load_model (TF1 graphs and checkpoints)
    model_ends: dict = field(default_factory=dict)


@dataclass
class _Run:
    """What the steps of one run hand each other."""

    config: OptimizeConfig
    loaded: object = None
    examples: list = None
    input_source: str = None
    mode: str = None
    variants: list = field(default_factory=list)
    transforms: dict = field(default_factory=dict)
    reference: list = None
    margin: float = None
    evidence: object = None
    gates: object = None
    order: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    steps: dict = field(default_factory=dict)

    @property
    def ends(self):
        return self.loaded.input_names, self.loaded.output_names

    @property
    def count(self):
        return len(self.examples[0])

    @property
    def first_example(self):
        """{input name: its first example, batch 1}: what the confirming timings feed."""
        return {n: x[:1] for n, x in zip(self.ends[0], self.examples)}

    @property
    def eligible(self):
        return "fp32" in self.config.precisions


def _pipeline(config, bench, recipes, prog):
    run = _Run(config)
    _set_keras_threads(config.threads, run.notes)
    with prog.step("load and freeze"):
        _load(run, prog)
    run.steps["load and freeze"] = prog.last_seconds
    with prog.step("transform", total=3 + len(config.extra_variants)):
        _transform(run, recipes, prog)
    run.steps["transform"] = prog.last_seconds
    with prog.step("verify", total=len(run.variants) + 3):
        _verify(run, prog)
    run.steps["verify"] = prog.last_seconds
    timed = [v for v in run.variants if v.kind == "keras" or (v.graph_def and v.verified_on)]
    with prog.step("benchmark", total=len(timed) * config.rounds):
        # Timed: everything that ran, including variants the gate failed (their speed is
        # still worth seeing); not those that were skipped, or that TF could not build or run.
        run.order, timed = time_rounds(
            timed, bench, run.loaded.keras_model, run.examples, *run.ends, config.runs,
            config.rounds, config.warmup, config.threads, config.cpus, config.allow_io_ops, prog)
        if config.batch:
            time_batch(timed, config.batch, bench, run.loaded.keras_model, run.examples,
                       *run.ends, max(3, config.runs // config.rounds), config.warmup,
                       _bench_kwargs(config), config.allow_io_ops, prog)
    run.steps["benchmark"] = prog.last_seconds
    with prog.step("report", total=len(ARTIFACTS)):
        report = _report(run, bench, prog)
    report.step_seconds["report"] = prog.last_seconds
    return report


def _bench_kwargs(config):
    from leangraph.pipeline.timing import bench_kwargs

    return bench_kwargs(config.threads, config.cpus)


def _load(run, prog):
    c = run.config
    from leangraph.pipeline.data import holds_whole_examples, named_inputs

    ends = dict(c.model_ends)
    if c.data is not None and ends.get("inputs") is None:
        ends["data_inputs"] = named_inputs(c.data)
    run.loaded = loaded = _load_model(c.model, c.unsafe, prog, c.signature, c.input_shapes,
                                      c.weights, ends,
                                      batch_size=None if holds_whole_examples(c.data) else 1)
    run.notes.extend(loaded.notes)
    if c.baseline_note:
        run.notes.append(c.baseline_note)
    # Every variant is run below; a model whose graph reads or writes files
    # (or calls Python) would act on this machine.
    from leangraph.safety import require_safe

    require_safe(loaded.graph_def, c.allow_io_ops, what=f"the frozen graph of {loaded.label}")
    if c.data is None:
        run.examples, run.input_source, run.mode = _make_inputs(
            loaded.frozen, loaded.keras_model, c.images, c.preprocess, run.notes)
        run.evidence = evidence.invented(run.examples, run.input_source)
        if c.calibration_dir is not None:
            evidence.add_calibration(run.evidence, c.calibration_dir, loaded, run.mode,
                                     c.data_flags[1])
    else:
        run.mode = evidence.preprocessing_mode(c.preprocess, loaded.keras_model)
        run.evidence = evidence.from_data(c.data, loaded, run.mode, c.verify_samples,
                                          c.calibration_samples, c.calibration_dir,
                                          *c.data_flags)
        run.examples, run.input_source = run.evidence.verification, run.evidence.source
        if run.evidence.images and not c.preprocess:
            _unknown_family(loaded.keras_model, run.mode, run.notes)
        if c.batch and isinstance(run.examples[0], PerExample):
            run.notes.append(f"--batch {c.batch} is not timed: examples fed one file each "
                             "have no batch axis to fill")
            c.batch = None
        prog.note(f"verifying on {run.count} example(s) of {run.input_source}")
        if c.images is not None:
            run.notes.append(f"--images {c.images} makes invented inputs, which are not used "
                             "with --data")
            c.images = None
    run.gates = Gates.for_graph(loaded.graph_def, loaded.outputs, c.tolerance, c.output_kinds,
                                c.gates).read_labels(run.evidence.labels)
    prog.item(f"frozen: {len(loaded.graph_def.node)} nodes; inputs "
              f"{_describe_inputs(loaded.frozen)}")
    c.runs = run.count if c.runs is None else c.runs
    c.warmup = max(2, min(10, c.runs // 10)) if c.warmup is None else int(c.warmup)
    c.rounds = min(c.rounds or (3 if c.runs >= 30 else 1), c.runs)


def _transform(run, recipes, prog):
    c, loaded = run.config, run.loaded
    if loaded.keras_model is not None:
        # Keras-only rows: there is a Keras model to call.
        size = loaded.file_bytes
        run.variants += [
            Variant(name="keras-predict", description="Keras model.predict (the reference)",
                    kind="keras", file_bytes=size, is_reference=True),
            Variant(name="keras-call", description="Keras model(x, training=False)",
                    kind="keras", file_bytes=size),
        ]
    frozen = graph_variant(
        "frozen", "frozen GraphDef in a TF session (leangraph.freeze)"
        + ("" if loaded.keras_model is not None
           else f"; the reference: the model as given ({loaded.source})"),
        loaded.graph_def, eligible=run.eligible, is_reference=loaded.keras_model is None)
    run.variants.append(frozen)
    for name in ["tf-deploy"] + ([c.recipe] if c.recipe != "tf-deploy" else []):
        prog.item(f"recipe {name}")
        try:
            text = recipes.recipe(name, frozen.graph_def)
        except (TransformError, GraphError) as exc:
            run.variants.append(failed_variant(name, f"recipe {name}", f"recipe failed: {exc}"))
            continue
        run.transforms[name] = text
        who = ("TensorFlow's Optimizing-for-Deployment recipe, verbatim" if name == "tf-deploy"
               else f"leangraph's {name} recipe")
        run.variants.append(transform_variant(name, who, frozen.graph_def, text, run.ends,
                                              base="frozen", eligible=run.eligible,
                                              allow_io_ops=c.allow_io_ops))
        prog.advance()
    for name, fn in c.extra_variants.items():
        prog.item(f"extra variant {name}")
        try:
            graph = fn(graphs.load_graph(frozen.graph_def))
        except LeangraphError as exc:
            run.variants.append(failed_variant(name, "extra variant",
                                               f"building it failed: {exc}"))
            continue
        run.variants.append(graph_variant(name, "extra variant (given to optimize())", graph,
                                          base="frozen", eligible=run.eligible))
        prog.advance()


def _outputs(run, v):
    """A variant's outputs on every verification input (None: it could not run)."""
    keras_model, output_names = run.loaded.keras_model, run.loaded.output_names
    if v.is_reference and run.reference is not None:
        return run.reference
    if isinstance(run.examples[0], PerExample):
        return _keras_per_example(run) if v.kind == "keras" else run_variant(v, *run.ends,
                                                                             run.examples)
    if v.name == "keras-predict":
        predicted = keras_model.predict(_keras_x(run.examples),
                                        batch_size=min(run.count, _KERAS_BATCH), verbose=0)
        return _as_list(predicted, output_names)
    if v.name == "keras-call":
        parts = [_as_list(keras_model(_keras_x(run.examples, i, i + _KERAS_BATCH),
                                      training=False), output_names)
                 for i in range(0, run.count, _KERAS_BATCH)]
        return [np.concatenate([np.asarray(p[k]) for p in parts])
                for k in range(len(output_names))]
    return run_variant(v, *run.ends, run.examples)


def _keras_per_example(run):
    """The Keras model's outputs on examples fed one file each (they cannot be stacked)."""
    names = run.loaded.output_names
    parts = [_as_list(run.loaded.keras_model(_keras_x(run.examples, i, i + 1), training=False),
                      names) for i in range(run.count)]
    return [np.concatenate([np.asarray(p[k]) for p in parts]) for k in range(len(names))]


def _verify(run, prog):
    """The reference first, then every variant; the derived ones from the best fp32 graph."""
    c = run.config
    reference = next(v for v in run.variants if v.is_reference)
    prog.item(f"{reference.name} (the reference) on {run.count} input(s)")
    run.reference = _outputs(run, reference)
    if run.reference is None:
        raise GraphError(f"the frozen graph of {run.loaded.label} cannot be run: "
                         f"{reference.reason}")
    prog.advance()
    run.margin = top1_margin(run.reference)
    fragile = run.margin is not None and run.margin < FRAGILE_MARGIN
    run.gates.fragile = fragile
    ref_scores = evidence.reference_scores(run.reference, run.gates, run.evidence)
    if ref_scores:
        reference.verification = {"scores": ref_scores}
    if fragile:
        run.notes.append(f"the reference's top-1 class leads the runner-up by a median "
                         f"{100 * run.margin:.2g} % of its score on these inputs, so top-1 "
                         "agreement is fragile here (random weights or inputs): tiny numeric "
                         "changes flip it; the bf16 and int8 variants are therefore gated on "
                         f"their outputs' SQNR against the reference (>= {MIN_SQNR_DB:g} dB) "
                         "instead")

    def check(v):
        # Only the precisions known to change numbers by rounding; a registered
        # variant of another kind keeps the gate it declared.
        if fragile and v.gate == "top1" and v.precision in ("bf16", "int8", "int8-weights"):
            v.gate = "sqnr"
        prog.item(f"{v.name} on {run.count} input(s)")
        outputs = _outputs(run, v)
        verify(v, outputs, run.reference, c.tolerance, run.gates, examples=run.count)
        evidence.score(v, outputs, run.gates, run.evidence, ref_scores, c.max_accuracy_drop,
                       c.max_mae_increase)
        prog.advance()

    for v in run.variants:
        if v.status == PASSED:
            check(v)
    best = next((v for n in (c.recipe, "tf-deploy", "frozen")
                 for v in run.variants if v.name == n and v.passed), None)
    calibration = run.evidence.calibration
    derived = build_derived(BuildContext(best=best, ends=run.ends, precisions=c.precisions,
                                         examples=run.examples, allow_io_ops=c.allow_io_ops,
                                         calibration=calibration,
                                         int8_weight_bits=c.int8_weight_bits))
    if calibration is not None and any(v.precision == "int8" and v.status != SKIPPED
                                       for v in derived):
        run.notes.append(f"int8 calibrated on {len(calibration[0])} example(s) "
                         f"({run.evidence.calibration_source})")
    for v in derived:
        if v.status == PASSED:
            check(v)
    evidence.mark_speed_only(run.variants + derived, run.evidence)
    run.variants.extend(derived)


def _confirm(run, bench, chosen, prog):
    """The chosen graph against the frozen graph, timed in pairs until the interval is tight.

    The rounds above rank the variants; this is the number the report claims, so a
    noisy machine costs time here, not truth.
    """
    frozen = next((v for v in run.variants if v.name == "frozen" and v.graph_def), None)
    if chosen is None or frozen is None or chosen is frozen:
        return None
    c = run.config
    prog.item(f"{chosen.name} vs frozen: pairs until the 95 % interval is within "
              f"±{CONFIRM_TARGET_CI:.0%}")
    feeds = run.first_example
    try:
        result = bench.compare(frozen.graph_def, chosen.graph_def, feeds, outputs=run.ends[1],
                               runs=20, warmup=3, target_ci=CONFIRM_TARGET_CI,
                               max_time=CONFIRM_MAX_TIME, precision_b=chosen.bench_precision,
                               allow_io_ops=True, **_bench_kwargs(c))
    except LeangraphError as exc:
        run.notes.append(f"the confirming comparison of {chosen.name} with frozen failed: {exc}")
        return None
    lo, hi = result.speedup_ci95
    run.notes.append(
        f"{chosen.name} vs the frozen graph, re-timed in {result.pairs} interleaved pairs: "
        f"{result.speedup:.2f}× faster [95 % CI {lo:.2f}, {hi:.2f}]"
        + (f", {result.sessions} sessions of each" if result.sessions > 1 else "")
        + ("" if result.target_met else
           f" (the ±{CONFIRM_TARGET_CI:.0%} target was not met in {CONFIRM_MAX_TIME:g} s: "
           "a noisy machine)"))
    return {"a": "frozen", "b": chosen.name, "speedup": result.speedup,
            "speedup_ci95": list(result.speedup_ci95), "pairs": result.pairs,
            "target_ci": CONFIRM_TARGET_CI, "target_met": result.target_met,
            "position_effect": result.position_effect, "sessions": result.sessions,
            "between_sessions_sd": result.between_sessions_sd}


#: How many fastest-ranked variants the interleaved pairs may overrule before the
#: next one is taken unconfirmed (each confirmation takes up to CONFIRM_MAX_TIME).
MAX_OVERRULED = 2


def _choose(run, bench, staging, ranked, prog):
    """(the result, its confirming comparison with the frozen graph), written to staging.

    The rounds rank variants timed one after another; the pairs that confirm the
    first are interleaved, so a slow phase of the machine hits both graphs alike.
    When the pairs find the first slower than the frozen graph (its interval all
    below 1), the rounds misranked it: it goes behind the frozen graph and the
    next is written and confirmed instead.
    """
    c = run.config
    ranked = list(ranked)
    overruled = 0
    while True:
        ranked = [v for v in ranked if v.passed]  # not one whose SavedModel already failed
        chosen = write_result(staging, ranked, run.examples, run.reference, *run.ends,
                              c.tolerance, run.notes, prog, gates=run.gates)
        confirmed = _confirm(run, bench, chosen, prog)
        if (chosen is None or confirmed is None or confirmed["speedup_ci95"][1] >= 1.0
                or overruled >= MAX_OVERRULED):
            return chosen, confirmed
        overruled += 1
        lo, hi = confirmed["speedup_ci95"]
        slower = (f"in interleaved pairs {chosen.name} runs at {confirmed['speedup']:.2f}x the "
                  f"frozen graph's speed [95 % CI {lo:.2f}, {hi:.2f}]: slower")
        ranked.remove(chosen)
        frozen = next((i for i, v in enumerate(ranked) if v.name == "frozen"), None)
        ranked.insert(len(ranked) if frozen is None else frozen + 1, chosen)
        if ranked[0] is chosen:
            run.notes.append(f"{slower}, but no other variant of the precisions asked for "
                             "passed, so it stays the result")
            return chosen, confirmed
        run.notes.append(f"{chosen.name} ranked first in the timing rounds, but {slower}, so "
                         f"it is not the result; {ranked[0].name} is tried instead")


#: An int8 result is also timed on one intra-op thread and on all of them, in this many
#: alternating rounds of the child timer (one process each, so not paired).
THREAD_HINT_ROUNDS = 2


def _hint_cores(config):
    """The intra-op threads of "all cores": the CPUs pinned to, or those this process may use."""
    return len(config.cpus) if config.cpus else len(os.sched_getaffinity(0))


def _thread_hint(run, bench, chosen, prog):
    """{"1": ms, "N": ms, "N+caller": ms, "rounds": R} for an int8 result timed on 1 and
    on all N intra-op threads, the latter also with the calling thread working
    (bench.CALLER_THREAD_ENV); or None.

    TensorFlow forks and joins its intra-op pool once per op, which small int8 kernels may
    not repay, and its oneDNN kernels leave the calling thread idle while the pool works
    unless TF_ONEDNN_THREADPOOL_USE_CALLER_THREAD is set; the report says when either
    setting is clearly faster (measured: bench/results/2026-12-02-xeon-vnni-int8_bench.md,
    bench/results/2026-12-04-zen4-int8_bench-caller-thread.md). "N+caller" is left out when the
    variable is set already (then "N" has it). Only without --threads.
    """
    c = run.config
    cores = _hint_cores(c)
    if chosen is None or chosen.precision != "int8" or c.threads or cores < 2:
        return None
    caller_key = bench.CALLER_THREAD_VAR
    settings = [("1", 1, None), (str(cores), cores, None)]
    if not bench.caller_thread_set():
        settings.append((f"{cores}+caller", cores, bench.CALLER_THREAD_ENV))
    prog.item(f"{chosen.name} on 1 and on {cores} intra-op threads")
    try:
        best = _alternating(run, bench, [(key, chosen, threads, env)
                                         for key, threads, env in settings])
    except LeangraphError as exc:
        run.notes.append(f"timing {chosen.name} on 1 and on {cores} threads failed: {exc}")
        return None
    one, many = best["1"], best[str(cores)]
    caller = best.get(f"{cores}+caller")
    rounds = f"the better of {THREAD_HINT_ROUNDS} alternating rounds each"
    if one < 0.9 * min(many, caller or many):
        run.notes.append(
            f"{chosen.name} runs faster on 1 intra-op thread than on {cores} here ({one:.2f} vs "
            f"{many:.2f} ms, {rounds}): "
            "TensorFlow forks and joins its thread pool once per op, which these int8 kernels "
            "do not repay on this machine; serve it with intra_op_parallelism_threads=1 "
            "(`leangraph tune` searches thread counts)")
    elif caller is not None and caller < 0.9 * many:
        run.notes.append(
            f"{chosen.name} runs faster on {cores} intra-op threads when the calling thread "
            f"works too ({caller:.2f} vs {many:.2f} ms, {rounds}): serve it with "
            f"{caller_key}=1 in the server's environment (TensorFlow reads it at start-up; "
            f"it applies when the intra-op pool has a thread per CPU the process may use)")
    return {**best, "rounds": THREAD_HINT_ROUNDS}


def _alternating(run, bench, settings):
    """{key: best p50 ms} over THREAD_HINT_ROUNDS alternating rounds of the child timer,
    one process per timing; settings: (key, variant, threads, env)."""
    c = run.config
    best = {}
    for _ in range(THREAD_HINT_ROUNDS):
        for key, variant, threads, env in settings:
            timed = bench.benchmark_in_child(
                variant.graph_def, run.first_example, outputs=run.ends[1],
                runs=max(10, c.runs // 2), warmup=3, threads=threads, cpus=c.cpus,
                precision=variant.bench_precision, measure_overhead=False, allow_io_ops=True,
                env=env)
            best[key] = min(best.get(key, timed.p50_ms), timed.p50_ms)
    return best


def _int8_caller_hint(run, bench, chosen, ranked, prog):
    """When the result is not int8 but an int8 variant passed: {"result": ms, "int8": ms,
    "rounds": R}, the result on all N threads against the int8 graph on N threads with
    the calling thread working (bench.CALLER_THREAD_ENV); or None.

    The timing rounds run in this process, where that setting cannot be switched per
    variant, so an int8 graph that only wins with it would be passed over silently
    (it happens: bench/results/2026-12-04-zen4-int8_bench-caller-thread.md). The report
    says so when it is clearly (10 %) faster; the result stays."""
    c = run.config
    cores = _hint_cores(c)
    int8 = next((v for v in ranked if v.precision == "int8"), None)
    caller_key = bench.CALLER_THREAD_VAR
    if chosen is None or chosen.precision == "int8" or int8 is None or c.threads \
            or cores < 2 or bench.caller_thread_set():
        return None
    prog.item(f"{int8.name} on {cores} threads with the calling thread, against {chosen.name}")
    try:
        best = _alternating(run, bench, [("result", chosen, cores, None),
                                         ("int8", int8, cores, bench.CALLER_THREAD_ENV)])
    except LeangraphError as exc:
        run.notes.append(f"timing {int8.name} with the calling thread failed: {exc}")
        return None
    if best["int8"] < 0.9 * best["result"]:
        run.notes.append(
            f"{int8.name} served with {caller_key}=1 runs faster than the result "
            f"{chosen.name} here ({best['int8']:.2f} vs {best['result']:.2f} ms on {cores} "
            f"threads, the better of {THREAD_HINT_ROUNDS} alternating rounds each, one process "
            f"per timing); the timing rounds above cannot set it per variant: "
            f"`--precision int8` makes {int8.name} the result, to be served with {caller_key}=1")
    return {**best, "rounds": THREAD_HINT_ROUNDS}


def _baseline(baseline, model_path):
    """(the baseline model, a note saying where it came from), or (None, None).

    Without an explicit one, a `leangraph prune` report.json beside MODEL names the
    model it pruned."""
    if baseline is not None:
        if isinstance(baseline, (str, os.PathLike)) and not Path(baseline).exists():
            raise UsageError(f"--baseline: {baseline} does not exist")
        return baseline, None
    if model_path is None:
        return None, None
    found = model_path.parent / "report.json"
    try:
        recorded = json.loads(found.read_text())
    except (OSError, ValueError):
        return None, None
    source = recorded.get("source") if isinstance(recorded, dict) else None
    if recorded.get("kind") != "leangraph prune" or not source or not Path(source).exists():
        return None, None
    return source, f"{model_path.name} was pruned from {source} ({found}): the baseline"


def _stacked(run, bench, chosen, prog):
    """Each step from the baseline's frozen graph to the result, timed in pairs."""
    c = run.config
    if c.baseline is None or chosen is None:
        return None
    prog.item("baseline: load and freeze")
    try:
        base = _load_model(c.baseline, c.unsafe, prog, c.signature, c.input_shapes, None)
    except LeangraphError as exc:
        run.notes.append(f"the baseline {c.baseline} could not be loaded, so no step-by-step "
                         f"speed-ups: {exc}")
        return None
    from leangraph.safety import require_safe

    require_safe(base.graph_def, c.allow_io_ops, what=f"the frozen graph of {base.label}")
    if (list(base.input_names), list(base.output_names)) != (list(run.ends[0]),
                                                             list(run.ends[1])):
        run.notes.append(
            f"the baseline's inputs/outputs ({', '.join(base.input_names)} -> "
            f"{', '.join(base.output_names)}) are not the model's, so no step-by-step speed-ups")
        return None
    by_name = {v.name: v for v in run.variants}
    chain = [("baseline", base.graph_def, "fp32"),
             ("frozen", by_name["frozen"].graph_def, "fp32")]
    fp32 = chosen if chosen.precision == "fp32" else by_name.get(chosen.base)
    if fp32 is not None and fp32.name != "frozen" and fp32.graph_def is not None:
        chain.append((fp32.name, fp32.graph_def, fp32.bench_precision))
    if chosen is not fp32:
        chain.append((chosen.name, chosen.graph_def, chosen.bench_precision))
    feeds = run.first_example

    def timed(a, b):
        prog.item(f"{b[0]} vs {a[0]}: pairs until the 95 % interval is within "
                  f"±{CONFIRM_TARGET_CI:.0%}")
        result = bench.compare(a[1], b[1], feeds, outputs=run.ends[1], runs=20, warmup=3,
                               target_ci=CONFIRM_TARGET_CI, max_time=CONFIRM_MAX_TIME,
                               precision=a[2], precision_b=b[2], allow_io_ops=True,
                               **_bench_kwargs(c))
        return {"a": a[0], "b": b[0], "speedup": result.speedup,
                "speedup_ci95": list(result.speedup_ci95), "pairs": result.pairs,
                "target_met": result.target_met}

    try:
        steps = [timed(a, b) for a, b in zip(chain, chain[1:])]
        end = timed(chain[0], chain[-1]) if len(chain) > 2 else steps[0]
    except LeangraphError as exc:
        run.notes.append(f"the step-by-step timing failed: {exc}")
        return None
    names = {"frozen": "pruned (frozen vs the baseline's frozen graph)"}
    product = float(np.prod([s["speedup"] for s in steps]))
    text = "; ".join(f"{names.get(s['b'], s['b'])} {s['speedup']:.2f}× "
                     f"[{s['speedup_ci95'][0]:.2f}, {s['speedup_ci95'][1]:.2f}]" for s in steps)
    run.notes.append(
        f"step by step from the baseline {base.label}: {text}; product {product:.2f}×, "
        f"measured end to end {end['speedup']:.2f}× [{end['speedup_ci95'][0]:.2f}, "
        f"{end['speedup_ci95'][1]:.2f}] (each step timed in interleaved pairs in this run)")
    return {"baseline": base.label, "steps": steps, "product": product, "end_to_end": end}


def _explain_bf16(run):
    """A timed bf16 slower than the best fp32 graph gets one line saying why, measured."""
    by_name = {v.name: v for v in run.variants}
    bf16 = by_name.get("bf16")
    fp32 = [v for v in run.variants if v.kind == "graph" and v.precision == "fp32"
            and v.passed and v.latency is not None]
    if bf16 is None or bf16.latency is None or not fp32:
        return
    best = min(fp32, key=lambda v: v.latency.p50_ms)
    if bf16.latency.p50_ms >= best.latency.p50_ms:
        from leangraph.pipeline.throughput import bf16_note

        run.notes.append(bf16_note(bf16.latency.p50_ms, best.latency.p50_ms))


def _aliases(data, image_dir, calibration_data, calibration_dir):
    """--image-dir and --calibration-dir are the old names of --data and --calibration-data."""
    if data is not None and image_dir is not None:
        raise UsageError("--image-dir is the old name of --data: give one of them")
    if calibration_data is not None and calibration_dir is not None:
        raise UsageError("--calibration-dir is the old name of --calibration-data: give one")
    return (data if data is not None else image_dir,
            calibration_data if calibration_data is not None else calibration_dir)


def _report(run, bench, prog):
    c, loaded = run.config, run.loaded
    evidence.add_speedups(run.variants)
    ranked = rank_results(run.variants)
    _explain_bf16(run)
    settings = {
        "recipe": c.recipe, "precisions": list(c.precisions), "images": run.count,
        "runs": c.runs, "warmup": c.warmup, "rounds": c.rounds, "threads": c.threads,
        "cpus": c.cpus,
        "threads_text": (f"{c.threads} intra-op thread(s)" if c.threads
                         else "TensorFlow's default threads")
        + (f", pinned to CPUs {','.join(map(str, c.cpus))}" if c.cpus else ""),
        "tolerance": c.tolerance, "min_top1": MIN_TOP1_AGREEMENT, "min_sqnr_db": MIN_SQNR_DB,
        "unsafe": bool(c.unsafe),
        "batch": c.batch, "signature": c.signature, "source": loaded.source,
        "data": str(c.data) if isinstance(c.data, (str, os.PathLike)) else None,
        "image_dir": str(c.data) if run.evidence.images else None,
        "preprocess": c.preprocess, "preprocessing": run.mode, "input_source": run.input_source,
        "inputs": [t.to_dict() for t in loaded.inputs],
        "outputs": [t.to_dict() for t in loaded.outputs],
        "transforms": run.transforms, "bench_order": run.order,
        "top1_margin_median": run.margin,
        "verification": run.evidence.to_dict(),
        "output_kinds": dict(zip(run.gates.names, run.gates.kinds)),
        "model_ends": _model_ends(c.model_ends),
    }
    if not ranked:
        run.notes.append("no eligible graph variant passed verification, so neither "
                         "optimized.pb nor optimized_savedmodel/ was written")
    environment = hardware.environment(c.cpus, c.threads)
    environment["native bf16 (AVX512_BF16 or AMX-BF16)"] = (
        "yes" if bench.cpu_supports_bf16() else "no")
    from leangraph.quantization.int8 import int8_kernels

    environment["8-bit kernels"] = int8_kernels()
    report = OptimizeReport(model=loaded.label, outdir=c.outdir, settings=settings,
                            environment=environment, variants=run.variants, result=None,
                            notes=run.notes, step_seconds=run.steps)
    staging = make_staging(c.outdir)
    try:
        written = []
        chosen, settings["confirmed"] = _choose(run, bench, staging, ranked, prog)
        if chosen is not None:
            written += ["optimized.pb", "optimized_savedmodel"]
        elif ranked:
            run.notes.append("no passing variant's exported SavedModel passed its gate, so "
                             "neither optimized.pb nor optimized_savedmodel/ was written")
        report.result = chosen.name if chosen is not None else None
        settings["stacked"] = _stacked(run, bench, chosen, prog)
        settings["threads_hint"] = _thread_hint(run, bench, chosen, prog)
        settings["int8_caller_hint"] = _int8_caller_hint(run, bench, chosen, ranked, prog)
        report.commands = _reproduce_commands(c.model_path, c.outdir, settings, chosen)
        prog.item("latency.png")
        (staging / "latency.png").write_bytes(render_latency_png(report))
        written += ["latency.png", "report.md", "report.json"]
        report.files = {name: c.outdir / name for name in written}
        prog.item("report.md, report.json")
        (staging / "report.md").write_bytes(render_markdown(report))
        (staging / "report.json").write_bytes(render_json(report))
        commit(staging, c.outdir, written)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return report
