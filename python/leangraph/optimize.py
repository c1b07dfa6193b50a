"""leangraph.optimize(): freeze, transform, verify, time and report, in one call.

The pipeline, in the order the progress display shows it:

1. load and freeze   the Keras model (safe mode) -> a clean frozen GraphDef
2. transform         TF's `tf-deploy` recipe, leangraph's recipe (default `deploy`),
                     bf16 of the best fp32 graph, quantize_weights
3. verify            every variant against Keras `predict` on the same inputs
4. benchmark         every variant, side by side in this process on the same input
5. report            optimized.pb, optimized_savedmodel/, report.md, report.json,
                     latency.png, moved into OUTDIR only when all are complete

Verification gate: an fp32 variant passes when its largest difference from
Keras, relative to the largest Keras output magnitude, is within `tolerance`;
a bf16 or 8-bit-weight variant passes when its top-1 class agrees with Keras on
at least 99 % of the inputs (its max difference is reported). A FAILED variant
is never written as the result.
"""

import gc
import os
import platform
import shlex
import shutil
import signal
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from leangraph import graphs
from leangraph import images as image_inputs
from leangraph.errors import BenchmarkError, GraphError, LeangraphError, TransformError, UsageError
from leangraph.precision import restore_degenerate_ranges
from leangraph.report import (
    PASSED,
    SKIPPED,
    LatencyStats,
    OptimizeReport,
    VariantResult,
    render_json,
    render_latency_png,
    render_markdown,
)

#: What optimize() uses when no model is given.
DEFAULT_MODEL = "keras.applications.Xception(weights=None)"
DEFAULT_MODEL_SIZE = 299
DEFAULT_SEED = 0
DEFAULT_IMAGES = 100
#: bf16 and 8-bit-weight variants must agree with Keras' top-1 class this often.
MIN_TOP1_AGREEMENT = 0.99
PRECISION_CHOICES = ("fp32", "bf16")
# TF's quantize_weights leaves Dequantize without its defaulted `narrow_range`,
# which the timer's graph check refuses; the last step writes the defaults out.
QUANTIZE_WEIGHTS = "quantize_weights add_default_attributes"
ARTIFACTS = ("optimized.pb", "optimized_savedmodel", "report.md", "report.json", "latency.png")
# Keras runs the verification inputs in batches this small: a big model's activations
# for a batch of 16 at 299x299 take gigabytes.
_KERAS_BATCH = 4
# Smallest reference magnitude a relative difference divides by.
_TINY = float(np.finfo(np.float32).tiny)


class Interrupted(KeyboardInterrupt):
    """optimize() was stopped by a signal (SIGINT or SIGTERM); nothing was written to OUTDIR."""

    def __init__(self, signum):
        super().__init__(f"interrupted by {signal.Signals(signum).name}")
        self.signum = signum


# ---------------------------------------------------------------------------
# progress display
# ---------------------------------------------------------------------------

class _Progress:
    """Step-by-step progress: rich on a terminal, plain lines otherwise, nothing when off."""

    STEPS = ("load and freeze", "transform", "verify", "benchmark", "report")

    def __init__(self, enabled, stream=None):
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self._rich = None
        self._task = None
        self._step = 0
        if enabled and hasattr(self.stream, "isatty") and self.stream.isatty():
            try:
                from rich.console import Console
                from rich.progress import (
                    BarColumn,
                    MofNCompleteColumn,
                    Progress,
                    SpinnerColumn,
                    TextColumn,
                    TimeElapsedColumn,
                )
            except ImportError:
                pass
            else:
                self._console = Console(file=self.stream)
                self._rich = Progress(
                    SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                    MofNCompleteColumn(), TimeElapsedColumn(), console=self._console,
                )

    def __enter__(self):
        if self._rich is not None:
            self._rich.start()
        return self

    def __exit__(self, *exc):
        if self._rich is not None:
            self._rich.stop()
        return False

    def note(self, text):
        if not self.enabled:
            return
        if self._rich is not None:
            self._rich.console.print(text, markup=False, highlight=False)
        else:
            print(text, file=self.stream, flush=True)

    @contextmanager
    def step(self, name, total=None):
        self._step += 1
        label = f"[{self._step}/{len(self.STEPS)}] {name}"
        started = time.perf_counter()
        if self._rich is not None:
            self._task = self._rich.add_task(label, total=total)
        else:
            self.note(label)
        try:
            yield
        finally:
            if self._rich is not None and self._task is not None:
                task = self._rich.tasks[-1]
                # Back to the step's own name: the last item's text would read as still running.
                self._rich.update(self._task, description=label, completed=task.total or 1,
                                  total=task.total or 1)
                self._task = None
            self.last_seconds = time.perf_counter() - started

    def item(self, text):
        """One unit of work inside the current step."""
        if not self.enabled:
            return
        if self._rich is not None and self._task is not None:
            self._rich.update(self._task, description=text)
        else:
            self.note(f"      {text}")

    def advance(self):
        if self._rich is not None and self._task is not None:
            self._rich.advance(self._task)


# ---------------------------------------------------------------------------
# signals and the output folder
# ---------------------------------------------------------------------------

@contextmanager
def _sigterm_raises():
    """SIGTERM raises Interrupted (like SIGINT's KeyboardInterrupt), so clean-up code runs."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise Interrupted(signum)

    old = signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


@contextmanager
def _signals_deferred():
    """Holds SIGINT/SIGTERM while the finished files are renamed into OUTDIR.

    The renames are each atomic; deferring the signals keeps the set of them
    from being cut in half. A signal that arrived is raised as Interrupted after.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending = []

    def defer(signum, frame):
        pending.append(signum)

    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    for s in saved:
        signal.signal(s, defer)
    try:
        yield
    finally:
        for s, handler in saved.items():
            signal.signal(s, handler)
        for s in pending:
            if saved[s] is not signal.SIG_IGN:
                raise Interrupted(s)


def _check_outdir(outdir, model_path):
    """Refuses an OUTDIR that would overwrite the input model (or is not a folder)."""
    if model_path is not None and graphs.same_file(outdir, model_path):
        raise UsageError(f"OUTDIR {outdir} is the input model; refusing to overwrite it")
    if outdir.exists() and not outdir.is_dir():
        raise UsageError(f"OUTDIR {outdir} exists and is not a directory")
    if model_path is None:
        return
    model_path = Path(model_path)
    resolved_model = model_path.resolve()
    for name in ARTIFACTS:
        target = (outdir / name).resolve()
        if target == resolved_model or target in resolved_model.parents:
            raise UsageError(
                f"writing {outdir / name} would overwrite the input model {model_path}; "
                "choose another OUTDIR"
            )


def _make_staging(outdir):
    outdir = outdir.resolve()  # "." has no name and no parent of its own
    outdir.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{outdir.name}.leangraph-", suffix=".tmp",
                                 dir=outdir.parent))


def _commit(staging, outdir, names):
    """Moves the finished artifacts from `staging` into OUTDIR with renames only.

    A new OUTDIR is the staging folder itself, renamed (one atomic step). In an
    existing OUTDIR each artifact replaces its old version by rename; an old
    artifact that this run did not produce (e.g. a previous optimized.pb when no
    variant passed now) is removed so the folder never mixes two runs' results.
    """
    with _signals_deferred():
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(staging, 0o777 & ~umask)
        if not outdir.exists():
            os.rename(staging, outdir)
            return
        trash = staging / ".replaced"
        trash.mkdir()
        for name in ARTIFACTS:
            target = outdir / name
            source = staging / name
            exists = target.exists() or target.is_symlink()
            # A file replaces a file in one step; anything else is moved aside first.
            plain_swap = name in names and source.is_file() and target.is_file() \
                and not target.is_symlink()
            if exists and not plain_swap:
                os.rename(target, trash / name)
            if name in names:
                os.replace(source, target)
        shutil.rmtree(staging, ignore_errors=True)


# ---------------------------------------------------------------------------
# running graphs and comparing outputs
# ---------------------------------------------------------------------------

def _tensor(name):
    return name if ":" in name else name + ":0"


def _graph_outputs(graph_bytes, input_names, output_names, examples, session_config=None):
    """Runs a batch-1 graph on every example in one session; returns one array per output."""
    import tensorflow as tf

    graph_def = graphs.load_graph(graph_bytes)
    tf_graph = tf.Graph()
    with tf_graph.as_default():
        tf.import_graph_def(graph_def, name="")
    fetches = [_tensor(n) for n in output_names]
    feeds = [_tensor(n) for n in input_names]
    count = len(examples[0])
    results = [[] for _ in output_names]
    with tf.compat.v1.Session(graph=tf_graph, config=session_config) as session:
        for i in range(count):
            values = session.run(fetches, {f: x[i:i + 1] for f, x in zip(feeds, examples)})
            for slot, value in zip(results, values):
                slot.append(np.asarray(value))
    return [np.concatenate(r) for r in results]


def _top1(array):
    """Top-1 class per example for a class-score output ((N, ..., C) with C > 1), else None."""
    if array.ndim < 2 or array.shape[-1] < 2:
        return None
    return np.argmax(array.reshape(array.shape[0], -1, array.shape[-1]), axis=-1)


def compare_outputs(outputs, reference):
    """(max_abs_diff, max_rel_diff, top1_agreement) of outputs against reference outputs.

    relative difference = max|a - b| / max(max|reference|, tiny), per output,
    the largest over the outputs, so it is not dominated by near-zero elements.
    A non-finite value where the reference is finite counts as an infinite
    difference. top1_agreement (0..1) uses the first output that holds class
    scores, None if none does.
    """
    if len(outputs) != len(reference):
        raise GraphError(f"{len(outputs)} outputs, but the reference has {len(reference)}")
    max_abs = max_rel = 0.0
    agreement = None
    for out, ref in zip(outputs, reference):
        out = np.asarray(out, dtype=np.float64)
        ref = np.asarray(ref, dtype=np.float64)
        if out.shape != ref.shape:
            raise GraphError(f"an output has shape {out.shape}, the reference's {ref.shape}")
        diff = np.abs(out - ref)
        if diff.size and not np.all(np.isfinite(diff)):
            abs_o = rel_o = float("inf")
        else:
            abs_o = float(diff.max()) if diff.size else 0.0
            scale = max(float(np.abs(ref).max()) if ref.size else 0.0, _TINY)
            rel_o = abs_o / scale
        max_abs, max_rel = max(max_abs, abs_o), max(max_rel, rel_o)
        if agreement is None:
            a, b = _top1(out), _top1(ref)
            if a is not None:
                agreement = float(np.mean(a == b))
    return max_abs, max_rel, agreement


def top1_margin(reference):
    """Median over examples of (top-1 score - runner-up score) / |top-1 score|, or None.

    Near zero means the reference barely prefers its top class (e.g. a model
    with random weights), so top-1 agreement flips on tiny numeric changes.
    """
    for out in reference:
        out = np.asarray(out, dtype=np.float64)
        if out.ndim < 2 or out.shape[-1] < 2:
            continue
        scores = np.sort(out.reshape(-1, out.shape[-1]), axis=-1)
        lead = scores[:, -1] - scores[:, -2]
        return float(np.median(lead / np.maximum(np.abs(scores[:, -1]), _TINY)))
    return None


def gate_failure(gate, precision, max_rel_diff, top1_agreement, tolerance):
    """Why outputs fail a gate ("fp32": within `tolerance`; "top1": top-1 agreement), or None.

    The one definition of the gates: every variant is verified with it, and so
    is the SavedModel exported from the chosen one.
    """
    if max_rel_diff == float("inf"):
        return "outputs contain NaN or Inf where the reference's outputs are finite"
    if gate == "fp32":
        if not max_rel_diff <= tolerance:
            return (f"max relative difference {max_rel_diff:.3g} exceeds the tolerance "
                    f"{tolerance:g}")
        return None
    if top1_agreement is None:
        return ("top-1 agreement is undefined (no output holds class scores), and "
                f"{precision} changes numbers on purpose")
    if not top1_agreement >= MIN_TOP1_AGREEMENT:
        return (f"top-1 agreement {100 * top1_agreement:.1f} % is below "
                f"{100 * MIN_TOP1_AGREEMENT:.0f} %")
    return None


def _gate(variant, tolerance):
    """Applies the verification gate to a variant with measured differences."""
    if variant.status == SKIPPED:
        return
    reason = gate_failure(variant.gate, variant.precision, variant.max_rel_diff,
                          variant.top1_agreement, tolerance)
    if reason:
        variant.fail(reason)


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


# ---------------------------------------------------------------------------
# settings
# ---------------------------------------------------------------------------

def parse_cpus(cpus):
    """CPU ids from "0,1,4-5", a list of ints, or None."""
    if cpus is None:
        return None
    if isinstance(cpus, str):
        ids = []
        for part in cpus.split(","):
            part = part.strip()
            if not part:
                continue
            try:
                if "-" in part:
                    lo, hi = (int(p) for p in part.split("-", 1))
                    if hi < lo:
                        raise ValueError
                    ids.extend(range(lo, hi + 1))
                else:
                    ids.append(int(part))
            except ValueError:
                raise UsageError(
                    f"--cpus: '{part}' is not a CPU id or range like 0-3") from None
    else:
        ids = [int(c) for c in cpus]
    if not ids:
        raise UsageError("--cpus names no CPU")
    available = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    if available is not None:
        unknown = sorted(set(ids) - set(available))
        if unknown:
            raise UsageError(
                f"--cpus: CPU {', '.join(map(str, unknown))} is not available to this process "
                f"(available: {', '.join(map(str, available))})"
            )
    return sorted(set(ids))


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


def _split_runs(runs, rounds):
    base, extra = divmod(runs, rounds)
    return [base + (1 if r < extra else 0) for r in range(rounds)]


def _environment(cpus, threads):
    import tensorflow as tf

    from leangraph._version import __version__

    env = {"leangraph": __version__, "tensorflow": tf.__version__}
    try:
        import keras

        env["keras"] = keras.__version__
    except ImportError:
        pass
    env["python"] = platform.python_version()
    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as handle:
            for line in handle:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    env["cpu"] = cpu
    env["logical cpus"] = os.cpu_count()
    if hasattr(os, "sched_getaffinity"):
        env["cpus used"] = ",".join(map(str, sorted(os.sched_getaffinity(0))))
    env["intra-op threads"] = threads if threads else "TensorFlow's default"
    return env


# ---------------------------------------------------------------------------
# SavedModel export
# ---------------------------------------------------------------------------

def export_savedmodel(graph_def, input_names, output_names, path):
    """Writes a frozen GraphDef as a SavedModel with a `serving_default` signature.

    The GraphDef is imported into a tf.compat.v1.wrap_function, pruned to the
    named inputs and outputs, and served by a tf.function whose arguments are
    named after the inputs and whose result is {output name: tensor}.
    """
    import tensorflow as tf

    graph_def = graphs.load_graph(graph_def)

    def imported():
        tf.compat.v1.import_graph_def(graph_def, name="")

    wrapped = tf.compat.v1.wrap_function(imported, [])
    feeds = [wrapped.graph.get_tensor_by_name(_tensor(n)) for n in input_names]
    fetches = [wrapped.graph.get_tensor_by_name(_tensor(n)) for n in output_names]
    pruned = wrapped.prune(feeds, fetches)
    specs = [tf.TensorSpec(t.shape, t.dtype, name=graphs.node_name(n))
             for t, n in zip(feeds, input_names)]
    keys = [graphs.node_name(n) for n in output_names]

    def serve(*args):
        results = pruned(*args)
        return {k: tf.identity(r) for k, r in zip(keys, results)}

    module = tf.Module()
    module.pruned = pruned
    module.serve = tf.function(serve, input_signature=specs)
    tf.saved_model.save(module, str(path),
                        signatures={"serving_default": module.serve.get_concrete_function()})
    return Path(path)


def savedmodel_outputs(path, input_names, output_names, examples):
    """The `serving_default` outputs of a written SavedModel on every example, batch 1."""
    import tensorflow as tf

    loaded = tf.saved_model.load(str(path))
    fn = loaded.signatures["serving_default"]
    got = [[] for _ in output_names]
    for i in range(len(examples[0])):
        kwargs = {graphs.node_name(n): tf.constant(x[i:i + 1])
                  for n, x in zip(input_names, examples)}
        result = fn(**kwargs)
        for slot, name in zip(got, output_names):
            slot.append(result[graphs.node_name(name)].numpy())
    return [np.concatenate(g) for g in got]


def _check_savedmodel(path, variant, input_names, output_names, examples, reference, tolerance):
    """Why the written SavedModel fails the variant's own gate against the reference, or None.

    Graph and SavedModel run the same ops through different executors, so a
    bf16 graph's SavedModel differs from the graph by bf16 rounding: held to
    the fp32 tolerance it would fail although it is exactly as good.
    """
    outputs = savedmodel_outputs(path, input_names, output_names, examples)
    _, rel, top1 = compare_outputs(outputs, reference)
    reason = gate_failure(variant.gate, variant.precision, rel, top1, tolerance)
    if reason:
        return f"its exported SavedModel fails the {variant.gate} gate: {reason}"
    return None


def _write_result(staging, ranked, examples, reference, input_names, output_names, tolerance,
                  notes, prog):
    """Writes optimized.pb and optimized_savedmodel/ of the first ranked variant whose
    SavedModel passes its gate; returns that variant, or None.

    A candidate that fails this late check is marked FAILED and the next one
    is tried, so one exporter difference never leaves the run without a result.
    """
    for v in ranked:
        for name in ("optimized.pb", "optimized_savedmodel"):
            target = staging / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
        prog.item(f"optimized.pb, optimized_savedmodel/ ({v.name})")
        # Plain writes: the staging folder is private, and the move into OUTDIR is atomic.
        (staging / "optimized.pb").write_bytes(v.graph_def)
        export_savedmodel(v.graph_def, input_names, output_names, staging / "optimized_savedmodel")
        reason = _check_savedmodel(staging / "optimized_savedmodel", v, input_names, output_names,
                                   examples, reference, tolerance)
        if reason is None:
            return v
        v.fail(reason)
        nxt = ranked[ranked.index(v) + 1].name if v is not ranked[-1] else None
        notes.append(f"{v.name} was the fastest passing variant, but {reason}; "
                     + (f"falling back to {nxt}" if nxt else "no other variant is left"))
    return None


# ---------------------------------------------------------------------------
# the pipeline
# ---------------------------------------------------------------------------

def _load_model(model, unsafe, progress, signature=None):
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
    return load_model(model, unsafe=unsafe, signature=signature, batch_size=1)


def _describe_inputs(frozen):
    return ", ".join(f"{t.name} {t.dtype}[{t.shape_text()}]" for t in frozen.inputs)


def _make_inputs(frozen, keras_model, count, image_dir, preprocessing, progress, notes):
    """(list of arrays, one per graph input, N examples each; description; preprocessing mode)."""
    name = getattr(keras_model, "name", None)
    if preprocessing:
        mode = image_inputs.resolve_preprocessing(preprocessing)
    else:
        mode = image_inputs.family_preprocessing(name)
        if mode is None:
            # Raw 0..255 pixels would saturate most models and hide differences.
            mode = "tf"
            notes.append(f"no known preprocessing for model '{name}': image inputs are scaled to "
                         "[-1, 1] (tf mode); pass --preprocess NAME to choose")
    if image_dir is not None:
        if len(frozen.inputs) != 1:
            raise UsageError(
                f"--image-dir needs a model with one image input; this one has "
                f"{len(frozen.inputs)} ({_describe_inputs(frozen)})"
            )
        x, files = image_inputs.load_images(image_dir, frozen.inputs[0].shape, mode, limit=count)
        progress.note(f"read {len(files)} image(s) from {image_dir}, preprocessing: {mode}")
        return [x], f"{len(files)} image(s) from {image_dir}, preprocessing {mode}", mode
    arrays = []
    for i, info in enumerate(frozen.inputs):
        shape = info.shape
        is_image = (shape is not None and len(shape) == 4 and shape[-1] in (1, 3)
                    and np.issubdtype(np.dtype(info.dtype), np.floating))
        if is_image:
            arrays.append(image_inputs.random_images(shape, count, mode, seed=DEFAULT_SEED + i))
        else:
            arrays.append(image_inputs.random_inputs(shape, info.dtype, count,
                                                     seed=DEFAULT_SEED + i))
    what = f"seeded random pixels, preprocessing {mode}"
    return arrays, what, mode


def _graph_variant(name, description, graph_def, **kwargs):
    data = graphs.serialize(graph_def)
    return VariantResult(name=name, description=description, kind="graph",
                         nodes=len(graph_def.node), file_bytes=len(data), graph_def=data, **kwargs)


def _failed_variant(name, description, reason, **kwargs):
    v = VariantResult(name=name, description=description, kind="graph", **kwargs)
    v.fail(reason)
    return v


def _transform_variant(name, description, base_bytes, transforms, ends, post=None,
                       allow_io_ops=False, **kwargs):
    from leangraph.transform import transform

    try:
        result = transform(base_bytes, transforms, inputs=ends[0], outputs=ends[1],
                           allow_io_ops=allow_io_ops)
        if post is not None:
            result = post(graphs.load_graph(base_bytes), result)
    except (TransformError, GraphError, ValueError) as exc:
        return _failed_variant(name, description, f"transform failed: {exc}",
                               transform=transforms, **kwargs)
    return _graph_variant(name, description, result, transform=transforms, **kwargs)


def _bench_kwargs(threads, cpus):
    kwargs = {}
    if threads:
        kwargs["threads"] = threads
    if cpus:
        kwargs["cpus"] = cpus
    return kwargs


def _reproduce_commands(model, outdir, settings, result):
    quote = shlex.quote
    cmd = ["leangraph", "optimize"]
    if model is not None:
        cmd.append(str(model))
    cmd += ["-o", str(outdir), "--recipe", settings["recipe"],
            "--precision", ",".join(settings["precisions"])]
    if settings["image_dir"]:
        cmd += ["--image-dir", str(settings["image_dir"])]
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


def optimize(model=None, outdir="leangraph-optimized", recipe="deploy", precisions=("fp32", "bf16"),
             images=None, image_dir=None, preprocess=None, threads=None, cpus=None,
             tolerance=1e-4, unsafe=False, runs=None, warmup=None, rounds=None, progress=True,
             extra_variants=None, allow_io_ops=False, signature=None, batch=None):
    """Freezes a model, transforms it, verifies and times every variant, writes the result.

    model: any form leangraph.load_model() takes (a keras.Model, a `.keras`,
        `.h5` or architecture-`.json` path, a SavedModel directory, a frozen
        `.pb`/`.pbtxt`, a GraphDef, a tf.function); None uses the embedded
        default, keras.applications.Xception(weights=None) at 299x299 with
        seeded random weights. With a Keras model, Keras `predict` is the
        reference and the Keras rows are timed; otherwise the frozen graph is.
    signature: the SavedModel signature (default serving_default).
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
        stays an fp32 graph).
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

    Returns an OptimizeReport. Raises UsageError (a ValueError) for bad
    arguments, FreezeError for a model that cannot be loaded; an Interrupted
    (a KeyboardInterrupt) when a signal stops the run.
    """
    precisions = _parse_precisions(precisions)
    if images is not None:
        images = _positive_int(images, "--images")
    elif image_dir is None:
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
    _check_outdir(outdir, model_path)
    if image_dir is not None:
        image_inputs.list_images(image_dir)  # fail before the slow steps
    if preprocess:
        image_inputs.resolve_preprocessing(preprocess)
    from leangraph import bench, recipes

    if recipe not in recipes.RECIPES:
        raise UsageError(
            f"--recipe: unknown recipe '{recipe}'; known: {', '.join(sorted(recipes.RECIPES))}"
        )
    if batch is not None:
        batch = _positive_int(batch, "--batch")
        batch = None if batch == 1 else batch

    saved_affinity = os.sched_getaffinity(0) if cpus and hasattr(os, "sched_setaffinity") else None
    with _sigterm_raises(), _Progress(progress) as prog:
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
                signature=signature, batch=batch)
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
    precisions: tuple = ("fp32", "bf16")
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


def _pipeline(config, bench, recipes, prog):
    c = config
    model_path, outdir, recipe_name, precisions = c.model_path, c.outdir, c.recipe, c.precisions
    images, image_dir, preprocess, threads, cpus = c.images, c.image_dir, c.preprocess, \
        c.threads, c.cpus
    tolerance, unsafe, runs, warmup, rounds = c.tolerance, c.unsafe, c.runs, c.warmup, c.rounds
    extra_variants, allow_io_ops, signature, batch = c.extra_variants, c.allow_io_ops, \
        c.signature, c.batch
    notes = []
    steps = {}
    _set_keras_threads(threads, notes)

    # 1. load and freeze -----------------------------------------------------------
    with prog.step("load and freeze"):
        loaded = _load_model(c.model, unsafe, prog, signature)
        keras_model, label, frozen = loaded.keras_model, loaded.label, loaded.frozen
        notes.extend(loaded.notes)
        # Every variant is run below; a model whose graph reads or writes files
        # (or calls Python) would act on this machine.
        from leangraph.safety import require_safe

        require_safe(frozen.graph_def, allow_io_ops, what=f"the frozen graph of {label}")
        input_names = [t.name for t in frozen.inputs]
        output_names = [t.name for t in frozen.outputs]
        examples, input_source, mode = _make_inputs(frozen, keras_model, images, image_dir,
                                                    preprocess, prog, notes)
        count = len(examples[0])
        prog.item(f"frozen: {len(frozen.graph_def.node)} nodes; inputs {_describe_inputs(frozen)}")
    steps["load and freeze"] = prog.last_seconds
    if images is not None and count != images:
        notes.append(f"--images {images} asked for, but {image_dir} holds {count} image(s); "
                     f"verified on {count}")
    runs = count if runs is None else runs
    warmup = max(2, min(10, runs // 10)) if warmup is None else int(warmup)
    rounds = min(rounds or (3 if runs >= 30 else 1), runs)

    # 2. transform -----------------------------------------------------------------
    ends = (input_names, output_names)
    model_file_bytes = loaded.file_bytes
    variants = []
    if keras_model is not None:
        # Keras-only rows: there is a Keras model to call.
        variants += [
            VariantResult(name="keras-predict", description="Keras model.predict (the reference)",
                          kind="keras", file_bytes=model_file_bytes, is_reference=True),
            VariantResult(name="keras-call", description="Keras model(x, training=False)",
                          kind="keras", file_bytes=model_file_bytes),
        ]
    transforms_used = {}
    with prog.step("transform", total=3 + len(extra_variants)):
        frozen_v = _graph_variant(
            "frozen", "frozen GraphDef in a TF session (leangraph.freeze)"
            + ("" if keras_model is not None else f"; the reference: the model as given "
               f"({loaded.source})"),
            frozen.graph_def, eligible="fp32" in precisions, is_reference=keras_model is None)
        variants.append(frozen_v)
        frozen_bytes = frozen_v.graph_def
        names = ["tf-deploy"] + ([recipe_name] if recipe_name != "tf-deploy" else [])
        for name in names:
            prog.item(f"recipe {name}")
            try:
                text = recipes.recipe(name, frozen_bytes)
            except (TransformError, GraphError) as exc:
                variants.append(_failed_variant(name, f"recipe {name}", f"recipe failed: {exc}"))
                continue
            transforms_used[name] = text
            who = "TensorFlow's Optimizing-for-Deployment recipe, verbatim" if name == "tf-deploy" \
                else f"leangraph's {name} recipe"
            variants.append(_transform_variant(name, who, frozen_bytes, text, ends,
                                               base="frozen", eligible="fp32" in precisions,
                                               allow_io_ops=allow_io_ops))
            prog.advance()
        for name, fn in extra_variants.items():
            prog.item(f"extra variant {name}")
            try:
                graph = fn(graphs.load_graph(frozen_bytes))
            except LeangraphError as exc:
                variants.append(_failed_variant(name, "extra variant",
                                                f"building it failed: {exc}"))
                continue
            variants.append(_graph_variant(name, "extra variant (given to optimize())", graph,
                                           base="frozen", eligible="fp32" in precisions))
            prog.advance()
    steps["transform"] = prog.last_seconds

    # 3. verify (the fp32 ones first: the bf16 and size variants derive from the best of them)
    with prog.step("verify", total=len(variants) + 2):
        if keras_model is not None:
            prog.item(f"Keras predict on {count} input(s)")
            predicted = keras_model.predict(_keras_x(examples),
                                            batch_size=min(count, _KERAS_BATCH), verbose=0)
            reference = _as_list(predicted, output_names)
        else:
            prog.item(f"frozen graph (the reference) on {count} input(s)")
            reference = _run_variant(frozen_v, input_names, output_names, examples)
            if reference is None:
                raise GraphError(f"the frozen graph of {label} cannot be run: {frozen_v.reason}")
        prog.advance()
        margin = top1_margin(reference)
        if margin is not None and margin < 0.01:
            notes.append(f"the reference's top-1 class leads the runner-up by a median "
                         f"{100 * margin:.2g} % of its score on these inputs, so top-1 "
                         "agreement is fragile here (random weights or inputs): tiny numeric "
                         "changes flip it")

        def verify(v):
            """Runs one variant on every example and gates it against Keras predict."""
            prog.item(f"{v.name} on {count} input(s)")
            if v.is_reference:
                outputs = reference
            elif v.name == "keras-call":
                parts = [_as_list(keras_model(_keras_x(examples, i, i + _KERAS_BATCH),
                                              training=False), output_names)
                         for i in range(0, count, _KERAS_BATCH)]
                outputs = [np.concatenate([np.asarray(p[k]) for p in parts])
                           for k in range(len(output_names))]
            else:
                outputs = _run_variant(v, input_names, output_names, examples)
            if outputs is not None:
                v.max_abs_diff, v.max_rel_diff, v.top1_agreement = compare_outputs(
                    outputs, reference)
                v.verified_on = count
                _gate(v, tolerance)
            prog.advance()

        for v in variants:
            if v.status == PASSED:
                verify(v)

        best = next((variant for n in (recipe_name, "tf-deploy", "frozen")
                     for variant in variants if variant.name == n and variant.passed), None)
        derived = []
        bf16 = None
        if "bf16" in precisions:
            bf16 = _bf16_variant(best, bench, ends, allow_io_ops)
            derived.append(bf16)
        if best is not None:
            derived.append(_transform_variant(
                "quantize_weights", f"TF's quantize_weights of {best.name}: 8-bit weights in the "
                "file, dequantized at load (for size)", best.graph_def, QUANTIZE_WEIGHTS, ends,
                post=restore_degenerate_ranges, precision="int8-weights", gate="top1",
                base=best.name, allow_io_ops=allow_io_ops))
        else:
            derived.append(VariantResult(
                name="quantize_weights", description="TF's quantize_weights", kind="graph",
                precision="int8-weights", gate="top1", status=SKIPPED,
                reason="no fp32 graph variant passed"))
        for v in derived:
            if v.status == PASSED:
                verify(v)
        variants.extend(derived)
    steps["verify"] = prog.last_seconds

    # 4. benchmark -----------------------------------------------------------------
    # Timed: everything that ran, including variants the gate failed (their speed is still
    # worth seeing); not those that were skipped, or that TF could not build or run.
    timed = [v for v in variants if v.kind == "keras" or (v.graph_def and v.verified_on)]
    chunks = _split_runs(runs, rounds)
    samples = {v.name: [] for v in timed}
    init_ms = {v.name: [] for v in timed}
    order = []
    broken = set()
    feeds = {n: x[:1] for n, x in zip(input_names, examples)}
    keras_x = _keras_x(examples, 0, 1)
    bench_kwargs = _bench_kwargs(threads, cpus)
    with prog.step("benchmark", total=len(timed) * rounds):
        for r, chunk in enumerate(chunks):
            shift = r % len(timed)
            for v in timed[shift:] + timed[:shift]:
                prog.item(f"{v.name}: round {r + 1}/{rounds}, {chunk} runs")
                if v.name in broken:
                    prog.advance()
                    continue
                try:
                    result = _time_variant(v, bench, keras_model, keras_x, feeds, output_names,
                                           chunk, warmup, bench_kwargs, allow_io_ops)
                except BenchmarkError as exc:
                    # One graph the timer refuses must not sink the others' measurements.
                    v.fail(f"timing failed: {exc}")
                    broken.add(v.name)
                    prog.advance()
                    continue
                got = list(result.samples_ms)
                if len(got) != chunk:
                    raise BenchmarkError(f"the timer returned {len(got)} samples for {v.name}, "
                                         f"{chunk} were asked for")
                samples[v.name].extend(got)
                if getattr(result, "init_ms", None) is not None:
                    init_ms[v.name].append(float(result.init_ms))
                order.append(v.name)
                prog.advance()
        timed = [v for v in timed if v.name not in broken]
        for v in timed:
            v.latency = LatencyStats.from_samples(samples[v.name], rounds=rounds)
            if init_ms[v.name]:
                v.init_ms = float(np.median(init_ms[v.name]))
        reference_row = next((v for v in timed if v.is_reference), None)
        if reference_row is not None:
            for v in timed:
                v.speedup = reference_row.latency.p50_ms / v.latency.p50_ms
        if batch:
            _time_batch(timed, batch, bench, keras_model, examples, input_names, output_names,
                        max(3, runs // rounds), warmup, bench_kwargs, allow_io_ops, prog)
    steps["benchmark"] = prog.last_seconds

    # 5. report and write ----------------------------------------------------------
    ranked = rank_results(variants)
    result = ranked[0] if ranked else None
    settings = {
        "recipe": recipe_name, "precisions": list(precisions), "images": count, "runs": runs,
        "warmup": warmup, "rounds": rounds, "threads": threads, "cpus": cpus,
        "threads_text": (f"{threads} intra-op thread(s)" if threads
                         else "TensorFlow's default threads")
        + (f", pinned to CPUs {','.join(map(str, cpus))}" if cpus else ""),
        "tolerance": tolerance, "min_top1": MIN_TOP1_AGREEMENT, "unsafe": bool(unsafe),
        "batch": batch, "signature": signature, "source": loaded.source,
        "image_dir": str(image_dir) if image_dir is not None else None,
        "preprocess": preprocess, "preprocessing": mode, "input_source": input_source,
        "inputs": [t.to_dict() for t in frozen.inputs],
        "outputs": [t.to_dict() for t in frozen.outputs],
        "transforms": transforms_used, "bench_order": order, "top1_margin_median": margin,
    }
    if result is None:
        notes.append("no eligible graph variant passed verification, so neither optimized.pb nor "
                     "optimized_savedmodel/ was written")
    environment = _environment(cpus, threads)
    environment["native bf16 (AVX512_BF16 or AMX-BF16)"] = (
        "yes" if bench.cpu_supports_bf16() else "no")
    report = OptimizeReport(model=label, outdir=outdir, settings=settings,
                            environment=environment, variants=variants,
                            result=result.name if result else None, notes=notes,
                            step_seconds=steps)
    with prog.step("report", total=len(ARTIFACTS)):
        staging = _make_staging(outdir)
        try:
            written = []
            chosen = _write_result(staging, ranked, examples, reference, input_names,
                                   output_names, tolerance, notes, prog)
            if chosen is not None:
                written += ["optimized.pb", "optimized_savedmodel"]
            elif ranked:
                notes.append("no passing variant's exported SavedModel passed its gate, so "
                             "neither optimized.pb nor optimized_savedmodel/ was written")
            report.result = chosen.name if chosen is not None else None
            report.commands = _reproduce_commands(model_path, outdir, settings, chosen)
            prog.item("latency.png")
            (staging / "latency.png").write_bytes(render_latency_png(report))
            written += ["latency.png", "report.md", "report.json"]
            report.files = {name: outdir / name for name in written}
            prog.item("report.md, report.json")
            (staging / "report.md").write_bytes(render_markdown(report))
            (staging / "report.json").write_bytes(render_json(report))
            _commit(staging, outdir, written)
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
    report.step_seconds["report"] = prog.last_seconds
    return report


def _run_variant(v, input_names, output_names, examples):
    """A graph variant's outputs on every example; None (the variant FAILED) if TF refuses it."""
    import tensorflow as tf

    config = None
    if v.bench_precision == "bf16":
        from leangraph.precision import grappler_bf16_config

        config = grappler_bf16_config()
    try:
        return _graph_outputs(v.graph_def, input_names, output_names, examples, config)
    except (LeangraphError, ValueError, tf.errors.OpError) as exc:
        v.fail(f"running it failed: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}")
        return None
    finally:
        gc.collect()  # the imported graph holds a copy of every weight: free it now


def _time_variant(v, bench, keras_model, keras_x, feeds, output_names, runs, warmup, bench_kwargs,
                  allow_io_ops=False):
    """One round of timing for one variant: Keras in-process, graphs by the C++ timer."""
    if v.name == "keras-predict":
        return bench.benchmark_keras(keras_model, keras_x, mode="predict", runs=runs, warmup=warmup)
    if v.name == "keras-call":
        return bench.benchmark_keras(keras_model, keras_x, mode="call", runs=runs, warmup=warmup)
    return bench.benchmark(v.graph_def, feeds, outputs=output_names, runs=runs, warmup=warmup,
                           precision=v.bench_precision, allow_io_ops=allow_io_ops, **bench_kwargs)


def _with_batch(graph_bytes, input_names, batch):
    """The graph with its inputs' leading dimension set to `batch`."""
    graph_def = graphs.load_graph(graph_bytes)
    wanted = {graphs.node_name(n) for n in input_names}
    for node in graph_def.node:
        if node.name in wanted and node.op == "Placeholder" and node.attr["shape"].shape.dim:
            node.attr["shape"].shape.dim[0].size = batch
    return graph_def.SerializeToString()


def _time_batch(timed, batch, bench, keras_model, examples, input_names, output_names, runs,
                warmup, bench_kwargs, allow_io_ops, prog):
    """Times every variant once more at batch `batch` (one round each, same inputs).

    A graph whose shapes were folded for batch 1 (a Reshape to [1, -1], ...)
    cannot run a bigger batch; it gets a note, not a FAILED verdict.
    """
    x = [np.resize(e, (batch,) + e.shape[1:]) for e in examples]
    feeds = dict(zip(input_names, x))
    keras_x = x[0] if len(x) == 1 else x
    for v in timed:
        prog.item(f"{v.name}: batch {batch}, {runs} runs")
        v.batch = batch
        try:
            if v.kind == "keras":
                result = bench.benchmark_keras(keras_model, keras_x,
                                               mode="predict" if v.name == "keras-predict"
                                               else "call", runs=runs, warmup=warmup)
            else:
                result = bench.benchmark(_with_batch(v.graph_def, input_names, batch), feeds,
                                         outputs=output_names, runs=runs, warmup=warmup,
                                         precision=v.bench_precision, allow_io_ops=allow_io_ops,
                                         **bench_kwargs)
        except (BenchmarkError, GraphError) as exc:
            v.batch_note = f"batch {batch} failed: {str(exc).splitlines()[0][:200]}"
            continue
        v.batch_latency = LatencyStats.from_samples(list(result.samples_ms))


def _bf16_variant(best, bench, ends, allow_io_ops=False):
    """bf16 of the best fp32 graph: to_bfloat16 if registered, else Grappler's run-time rewrite."""
    if not bench.cpu_supports_bf16():
        return VariantResult(name="bf16", description="bf16", kind="graph", precision="bf16",
                             gate="top1", status=SKIPPED,
                             reason="this CPU has neither AVX512_BF16 nor AMX-BF16")
    if best is None:
        return VariantResult(name="bf16", description="bf16", kind="graph", precision="bf16",
                             gate="top1", status=SKIPPED, reason="no fp32 graph variant passed")
    from leangraph.transform import list_transforms

    if any(t.name == "to_bfloat16" for t in list_transforms()):
        return _transform_variant(
            "bf16", f"to_bfloat16 transform of {best.name} (bf16 compute in the graph)",
            best.graph_def, "to_bfloat16", ends, precision="bf16", gate="top1", base=best.name,
            eligible=True, allow_io_ops=allow_io_ops)
    v = _graph_variant(
        "bf16", f"{best.name} with Grappler's oneDNN bf16 rewrite at run time (timer "
        "precision=bf16; a session setting, so not written as optimized.pb)",
        graphs.load_graph(best.graph_def), precision="bf16", gate="top1", base=best.name,
        bench_precision="bf16", eligible=False)
    return v


def rank_results(variants):
    """Eligible variants that passed verification and were timed, fastest (p50) first."""
    candidates = [v for v in variants
                  if v.kind == "graph" and v.eligible and v.passed and v.latency is not None]
    return sorted(candidates, key=lambda v: v.latency.p50_ms)


def select_result(variants):
    """The fastest (lowest p50) variant that is eligible, passed verification and was timed."""
    ranked = rank_results(variants)
    return ranked[0] if ranked else None
