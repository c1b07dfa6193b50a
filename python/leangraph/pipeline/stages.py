"""optimize's stages, in the order the progress display shows: load and freeze,
transform, verify, benchmark, report. A Run carries what one stage hands the next.
"""

from dataclasses import dataclass, field

import numpy as np

from leangraph import graphs
from leangraph.errors import GraphError, LeangraphError, TransformError
from leangraph.metrics import Gates
from leangraph.pipeline import evidence
from leangraph.pipeline.data import (
    PerExample,
    holds_whole_examples,
    named_inputs,
)
from leangraph.pipeline.inputs import (
    KERAS_BATCH,
    as_list,
    describe_inputs,
    keras_x,
    load_any_model,
    make_inputs,
    unknown_family,
)
from leangraph.pipeline.outdir import (
    ARTIFACTS,
)
from leangraph.pipeline.precisions import build_derived, lossy
from leangraph.pipeline.reporting import report_stage
from leangraph.pipeline.settings import OptimizeConfig, run_bench_kwargs
from leangraph.pipeline.timing import time_batch, time_rounds
from leangraph.pipeline.variants import (
    PASSED,
    SKIPPED,
    BuildContext,
    Variant,
    failed_variant,
    graph_variant,
    run_variant,
    transform_variant,
)
from leangraph.pipeline.verify import (
    FRAGILE_MARGIN,
    MIN_SQNR_DB,
    top1_margin,
    verify,
)
from leangraph.runner import join_examples
from leangraph.safety import require_safe


def set_keras_threads(threads, notes):
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
class Run:
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


def run_pipeline(config, bench, recipes, prog):
    run = Run(config)
    set_keras_threads(config.threads, run.notes)
    with prog.step("load and freeze"):
        load_stage(run, prog)
    run.steps["load and freeze"] = prog.last_seconds
    with prog.step("transform", total=3 + len(config.extra_variants)):
        transform_stage(run, recipes, prog)
    run.steps["transform"] = prog.last_seconds
    with prog.step("verify", total=len(run.variants) + 3):
        verify_stage(run, prog)
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
                       run_bench_kwargs(config), config.allow_io_ops, prog)
    run.steps["benchmark"] = prog.last_seconds
    with prog.step("report", total=len(ARTIFACTS)):
        report = report_stage(run, bench, prog)
    report.step_seconds["report"] = prog.last_seconds
    return report


def load_stage(run, prog):
    c = run.config
    ends = dict(c.model_ends)
    if c.data is not None and ends.get("inputs") is None:
        ends["data_inputs"] = named_inputs(c.data)
    run.loaded = loaded = load_any_model(c.model, c.unsafe, prog, c.signature, c.input_shapes,
                                      c.weights, ends,
                                      batch_size=None if holds_whole_examples(c.data) else 1)
    run.notes.extend(loaded.notes)
    if c.baseline_note:
        run.notes.append(c.baseline_note)
    # Every variant is run below; a model whose graph reads or writes files
    # (or calls Python) would act on this machine.
    require_safe(loaded.graph_def, c.allow_io_ops, what=f"the frozen graph of {loaded.label}")
    if c.data is None:
        run.examples, run.input_source, run.mode = make_inputs(
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
            unknown_family(loaded.keras_model, run.mode, run.notes)
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
              f"{describe_inputs(loaded.frozen)}")
    c.runs = run.count if c.runs is None else c.runs
    c.warmup = max(2, min(10, c.runs // 10)) if c.warmup is None else int(c.warmup)
    c.rounds = min(c.rounds or (3 if c.runs >= 30 else 1), c.runs)


def transform_stage(run, recipes, prog):
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


def variant_outputs(run, v):
    """A variant's outputs on every verification input (None: it could not run)."""
    keras_model, output_names = run.loaded.keras_model, run.loaded.output_names
    if v.is_reference and run.reference is not None:
        return run.reference
    if isinstance(run.examples[0], PerExample):
        return keras_per_example(run) if v.kind == "keras" else run_variant(v, *run.ends,
                                                                             run.examples)
    if v.name == "keras-predict":
        predicted = keras_model.predict(keras_x(run.examples),
                                        batch_size=min(run.count, KERAS_BATCH), verbose=0)
        return as_list(predicted, output_names)
    if v.name == "keras-call":
        parts = [as_list(keras_model(keras_x(run.examples, i, i + KERAS_BATCH),
                                      training=False), output_names)
                 for i in range(0, run.count, KERAS_BATCH)]
        return [np.concatenate([np.asarray(p[k]) for p in parts])
                for k in range(len(output_names))]
    return run_variant(v, *run.ends, run.examples)


def keras_per_example(run):
    """The Keras model's outputs on examples fed one file each (they cannot be stacked)."""
    names = run.loaded.output_names
    parts = [as_list(run.loaded.keras_model(keras_x(run.examples, i, i + 1), training=False),
                      names) for i in range(run.count)]
    return [join_examples([p[k] for p in parts]) for k in range(len(names))]


def verify_stage(run, prog):
    """The reference first, then every variant; the derived ones from the best fp32 graph."""
    c = run.config
    reference = next(v for v in run.variants if v.is_reference)
    prog.item(f"{reference.name} (the reference) on {run.count} input(s)")
    run.reference = variant_outputs(run, reference)
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
        if fragile and v.gate == "top1" and lossy(v.precision):
            v.gate = "sqnr"
        prog.item(f"{v.name} on {run.count} input(s)")
        outputs = variant_outputs(run, v)
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
