"""leangraph.optimize(): freeze, transform, verify, time and report, in one call.

A short driver over leangraph.pipeline, in the order the progress display shows:

1. load and freeze   any model form (pipeline.model) -> a clean frozen GraphDef
2. transform         TF's `tf-deploy` recipe, leangraph's recipe (default `deploy`)
3. verify            every variant against the reference (Keras `predict`, or the
                     frozen graph when there is no Keras model), each with its own
                     gate (pipeline.verify); then the variants derived from the best
                     fp32 graph (the descriptors of pipeline.precisions.PRECISIONS,
                     the one precision registry tune builds from too: bf16, 8-bit
                     weights, int8), verified the same way
4. benchmark         every variant, side by side in this process (pipeline.timing)
5. report            optimized.pb, optimized_savedmodel/ (checked against the
                     variant's own gate; the next passing variant if it fails),
                     report.md, report.json, latency.png, moved into OUTDIR only
                     when all are complete (pipeline.outdir)

A FAILED variant is never written as the result.
"""

import os
from pathlib import Path

import numpy as np

from leangraph import bench
from leangraph import images as image_inputs
from leangraph import recipes
from leangraph.errors import QuantizeError, UsageError
from leangraph.hardware import parse_cpus
from leangraph.pipeline.data import (
    DEFAULT_CALIBRATION_SAMPLES,
    DEFAULT_VERIFY_SAMPLES,
    check_source,
)
from leangraph.pipeline.export import export_savedmodel, savedmodel_outputs
from leangraph.pipeline.options import DEFAULT_IMAGES
from leangraph.pipeline.outdir import (
    ARTIFACTS,
    Interrupted,
    check_outdir,
    commit,
    signals_deferred,
    sigterm_raises,
)
from leangraph.pipeline.progress import Progress
from leangraph.pipeline.settings import (
    DEFAULT_MODEL,
    DEFAULT_PRECISIONS,
    OptimizeConfig,
    data_aliases,
    parse_precisions,
    positive_int,
    resolve_baseline,
)
from leangraph.pipeline.stages import run_pipeline
from leangraph.pipeline.variants import (
    rank_results,
    select_result,
)
from leangraph.pipeline.verify import (
    compare_outputs,
    gate_failure,
    top1_margin,
)
from leangraph.quantization.int8 import check_weight_bits
from leangraph.report import OptimizeReport


__all__ = [
    "ARTIFACTS", "DEFAULT_IMAGES", "DEFAULT_MODEL", "Interrupted", "OptimizeConfig",
    "OptimizeReport",
    "compare_outputs", "export_savedmodel", "gate_failure", "optimize", "parse_cpus",
    "rank_results", "savedmodel_outputs", "select_result", "top1_margin",
]


# The names these pieces had when they lived here.
_commit = commit
_signals_deferred = signals_deferred


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
    precisions = parse_precisions(precisions)
    flags = ("--image-dir" if image_dir is not None else "--data",
             "--calibration-dir" if calibration_dir is not None else "--calibration-data")
    data, calibration_data = data_aliases(data, image_dir, calibration_data, calibration_dir)
    if data is None and precisions == ("int8",):
        raise UsageError("--precision int8 needs real examples to calibrate and verify on: "
                         "give --data")
    verify_samples = positive_int(verify_samples, "--verify-samples")
    calibration_samples = positive_int(calibration_samples, "--calibration-samples")
    if images is not None:
        images = positive_int(images, "--images")
    elif data is None:
        images = DEFAULT_IMAGES
    if runs is not None:
        runs = positive_int(runs, "--runs")
    if not (isinstance(tolerance, (int, float)) and np.isfinite(tolerance) and tolerance > 0):
        raise UsageError(f"--tolerance must be a positive number, got {tolerance!r}")
    if threads is not None:
        threads = positive_int(threads, "--threads")
    cpus = parse_cpus(cpus)
    if rounds is not None:
        rounds = positive_int(rounds, "rounds")
    outdir = Path(outdir)
    model_path = Path(model) if isinstance(model, (str, os.PathLike)) else None
    check_outdir(outdir, model_path)
    for given, what in zip((data, calibration_data), flags):
        check_source(given, what)  # before the slow steps
    if preprocess:
        image_inputs.resolve_preprocessing(preprocess)
    if int8_weight_bits is not None:
        try:
            check_weight_bits(int8_weight_bits)
        except QuantizeError as exc:
            raise UsageError(f"--int8-weight-bits: {exc}") from None
    baseline, baseline_note = resolve_baseline(baseline, model_path)
    recipes.check_name(recipe, "--recipe")
    if batch is not None:
        batch = positive_int(batch, "--batch")
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
            return run_pipeline(config, bench, recipes, prog)
        finally:
            if saved_affinity is not None:
                os.sched_setaffinity(0, saved_affinity)
