"""leangraph.tune(): the fastest variant of a graph within an accuracy budget.

The search space is model x recipe x precision x threads. Every variant is
built once (recipe, then precision), its accuracy measured once on the given
data, and each (variant, threads) timed once. A variant whose accuracy falls
more than `max_accuracy_drop` points below the fp32 original is never
returned, however fast. Small spaces are enumerated; larger ones are searched
with Optuna's TPE sampler. Every trial is recorded (JSON), and the result can
print the Pareto table (latency vs accuracy) and draw it.
"""

import json
import os
import sys
from dataclasses import asdict, dataclass, field
from itertools import product
from pathlib import Path

import numpy as np

from leangraph import graphs
from leangraph.errors import GraphError, LeangraphError, UsageError
from leangraph.hardware import cpu_supports_bf16
from leangraph.metrics import within_budget
from leangraph.precision import (
    PRECISIONS,
    apply_precision,
    evaluate,
    int8_threshold,
    is_calibrated,
    is_precision,
)

ORIGINAL = "original"

@dataclass
class Trial:
    """One measured configuration. accuracy is a fraction (0..1); accuracy_drop
    is in percentage points below the fp32 original (negative = better)."""

    number: int
    model: str
    recipe: str
    precision: str
    threads: int
    latency_ms: float | None = None
    accuracy: float | None = None
    accuracy_drop: float | None = None
    file_bytes: int | None = None
    feasible: bool = False
    error: str | None = None
    repeat_of: int | None = None
    #: why a measured trial cannot be the answer although it may be within the budget
    note: str | None = None

    @property
    def key(self):
        return (self.model, self.recipe, self.precision, self.threads)

    def label(self):
        return f"{self.model}/{self.recipe}/{self.precision}/t{self.threads}"


@dataclass
class TuneResult:
    best: Trial
    baseline: Trial
    trials: list
    max_accuracy_drop: float
    messages: list = field(default_factory=list)
    best_graph: object = None  # the winning GraphDef
    best_session_config: object = None  # a ConfigProto it needs (Grappler bf16), or None
    #: the best against the baseline, re-timed in interleaved pairs until the 95 %
    #: interval is within CONFIRM_TARGET_CI (None with an injected timer)
    confirmed: dict = None

    def measured(self):
        """Unique measured configurations (repeats of a trial left out)."""
        return [t for t in self.trials if t.repeat_of is None and t.latency_ms is not None]

    def pareto(self):
        """Measured trials no other trial beats on both latency and accuracy, fastest first."""
        points = self.measured()
        front = []
        for t in points:
            dominated = any(
                o is not t
                and o.latency_ms <= t.latency_ms
                and o.accuracy >= t.accuracy
                and (o.latency_ms < t.latency_ms or o.accuracy > t.accuracy)
                for o in points
            )
            if not dominated:
                front.append(t)
        return sorted(front, key=lambda t: (t.latency_ms, -t.accuracy))

    def table(self):
        """The Pareto front as a text table, with the baseline and the winner marked."""
        rows = [("", "model", "recipe", "precision", "threads", "p50 ms", "speedup",
                 "accuracy %", "drop pts", "file KB")]
        for t in self.pareto():
            mark = ("*" if t is self.best else "") + ("=" if t is self.baseline else "")
            if not t.feasible:
                mark += "x"
            rows.append((
                mark, t.model, t.recipe, t.precision, str(t.threads), f"{t.latency_ms:.3f}",
                f"{self.baseline.latency_ms / t.latency_ms:.2f}x", f"{100 * t.accuracy:.2f}",
                f"{t.accuracy_drop:+.2f}", f"{(t.file_bytes or 0) / 1024:.0f}",
            ))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
        lines.append(
            f"* best within {self.max_accuracy_drop} points; = fp32 baseline; x over budget"
        )
        return "\n".join(lines)

    def to_dict(self):
        return {
            "max_accuracy_drop": self.max_accuracy_drop,
            "best": asdict(self.best),
            "baseline": asdict(self.baseline),
            "pareto": [t.number for t in self.pareto()],
            "messages": list(self.messages),
            "trials": [asdict(t) for t in self.trials],
            "confirmed": self.confirmed,
        }

    def save_json(self, path):
        return graphs.atomic_write(path, json.dumps(self.to_dict(), indent=2).encode())

    def plot(self, path):
        """Latency vs accuracy of every measured trial, Pareto front and budget drawn."""
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib import pyplot as plt

        points = self.measured()
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for feasible, colour, name in ((True, "tab:blue", "within budget"),
                                       (False, "tab:red", "over budget")):
            group = [t for t in points if t.feasible == feasible]
            if group:
                ax.scatter([t.latency_ms for t in group], [100 * t.accuracy for t in group],
                           c=colour, label=name, alpha=0.7)
        front = self.pareto()
        ax.plot([t.latency_ms for t in front], [100 * t.accuracy for t in front],
                "k--", lw=1, label="Pareto front")
        floor = 100 * self.baseline.accuracy - self.max_accuracy_drop
        ax.axhline(floor, color="tab:red", lw=0.8, ls=":", label="accuracy budget")
        ax.annotate("best", (self.best.latency_ms, 100 * self.best.accuracy),
                    textcoords="offset points", xytext=(6, 6))
        ax.set_xlabel("p50 latency (ms)")
        ax.set_ylabel("accuracy (%)")
        ax.set_title("leangraph tune: latency vs accuracy")
        ax.legend(fontsize="small")
        fig.tight_layout()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp{path.suffix}")
        fig.savefig(tmp, dpi=110)
        plt.close(fig)
        os.replace(tmp, path)
        return path


def _recipe_string(name, graph_def):
    from leangraph import recipes

    recipes.check_name(name, also=("none",))
    return recipes.recipe(name, graph_def)


def _as_graph(model):
    """A GraphDef from any model form; a model is frozen with a dynamic batch, because
    accuracy is measured in batches and timed at batch_size."""
    is_graph_file = (isinstance(model, (str, os.PathLike)) and Path(model).is_file()
                     and Path(model).suffix in (".pb", ".pbtxt", ".prototxt", ".txt"))
    if is_graph_file or hasattr(model, "node") or isinstance(model, (bytes, bytearray)):
        return graphs.load_graph(model)
    from leangraph.pipeline.model import load_model

    return load_model(model, batch_size=None).graph_def


def available_recipes():
    """Recipe names tune can search ("none" = the graph as given)."""
    from leangraph import recipes

    return ["none"] + sorted(recipes.RECIPES)


def _is_grappler_bf16(session_config):
    from tensorflow.core.protobuf import rewriter_config_pb2

    rewrite = session_config.graph_options.rewrite_options
    return rewrite.auto_mixed_precision_onednn_bfloat16 == rewriter_config_pb2.RewriterConfig.ON


def _checked_input(x, graph_def, input_name):
    """x checked against the Placeholder it feeds and cast to its dtype (pipeline.data)."""
    from leangraph.freezing.clean import _tensor_infos
    from leangraph.pipeline import data as data_reader

    info = _tensor_infos(graph_def, [graphs.node_name(input_name)])
    return data_reader.read(x, info, what="x").arrays[0]


def session_timer(graph_def, session_config, threads, feeds, runs=30, warmup=5, max_time=10.0):
    """p50 latency (ms) of one run, by the C++ timer that times every other variant too.

    session_config: None, or Grappler's bf16 config (precision.grappler_bf16_config),
    which is the timer's precision="bf16": the same oneDNN rewrite, so that
    bf16-grappler trials are ranked on the same clock as the rest.
    """
    from leangraph.bench import benchmark

    precision = "fp32"
    if session_config is not None:
        if not _is_grappler_bf16(session_config):
            raise UsageError("session_timer times plain graphs and Grappler's bf16 rewrite; "
                             "this session config asks for something else")
        precision = "bf16"
    result = benchmark(graph_def, feeds, runs=runs, warmup=warmup, threads=threads,
                       max_time=max_time, precision=precision)
    return float(result.p50_ms)


def tune(model, x, y=None, *, max_accuracy_drop=0.5, n_trials=24, recipes=None,
         precisions=None, threads=None, candidates=None, batch_size=1, seed=0,
         record=None, timer=None, input_name=None, output_name=None, log=None, shared=None,
         verify_samples=None, calibration_samples=None):
    """Searches model x recipe x precision x threads for the fastest variant within budget.

    model: any form leangraph.load_model() takes (a frozen graph, a Keras file or
        model, a SavedModel directory, ...). x, y: evaluation data
        (y: class labels; without it accuracy means top-1 agreement with the
        fp32 original). max_accuracy_drop: percentage points below the fp32
        original's accuracy a variant may lose.
    recipes: names from available_recipes() (default: all). precisions: names
        from precision.PRECISIONS or int8@DB (default fp32, bf16, bf16-grappler,
        int8-weights, int8 and int8@25: leangraph's int8 at two fallback
        thresholds). threads: intra-op thread counts (default 1 and all cores).
    verify_samples / calibration_samples: x is split as pipeline.data.split does
        (seeded): every variant is scored on the held-out part, at most
        verify_samples of it, and the int8 precisions calibrate on at most
        calibration_samples of the rest. With fewer than 32 examples nothing is
        held out, and the int8 precisions are measured but never the answer.
    candidates: {name: graph} alternatives to the model (e.g. a pruned copy),
        searched the same way and held to the same budget.
    batch_size: examples per timed run. record: a JSON path rewritten after
        every trial. timer(graph_def, session_config, threads, feeds) -> ms
        replaces session_timer. log: callable for progress lines (default stderr).
    shared: a leangraph.search.shared.SharedStudy: the trials live in its Optuna
        storage, shared with every other worker of that study (n_trials then
        counts COMPLETE trials study-wide).

    bf16 on a CPU without AVX512_BF16/AMX-BF16 (or with LEANGRAPH_FAKE_NO_BF16=1)
    is dropped from the search with a message; fp32 is kept.
    Returns a TuneResult; its .best is never over the budget (the fp32
    original, always measured first, is the fallback).
    """
    from leangraph._extras import require

    optuna = require("optuna", "leangraph tune")

    log = log or (lambda line: print(line, file=sys.stderr))
    timer = timer or session_timer
    if shared is not None:
        timer = shared.serialize_timing(timer)
    messages = []

    def say(line):
        messages.append(line)
        log(line)

    if max_accuracy_drop < 0:
        raise UsageError(f"max_accuracy_drop must be >= 0, got {max_accuracy_drop}")
    base_graph = _as_graph(model)
    x = np.asarray(x)
    if len(x) == 0:
        raise UsageError("tune needs evaluation data: x is empty")
    inputs = graphs.default_inputs(base_graph)
    input_name = input_name or (inputs[0] if len(inputs) == 1 else None)
    if input_name is None:
        raise UsageError(f"the graph has {len(inputs)} Placeholders ({', '.join(inputs)}); "
                         "tune evaluates one input: name it")
    x = _checked_input(x, base_graph, input_name)
    output_name = output_name or graphs.default_outputs(base_graph)[0]
    given = (x, y)  # what a shared study fingerprints: the user's data, not the split
    x, y, x_calib, too_few = _split(x, y, verify_samples, calibration_samples, say)

    models = {ORIGINAL: base_graph}
    for name, graph in (candidates or {}).items():
        if name in models:
            raise UsageError(f"candidate name '{name}' is taken")
        models[name] = graphs.load_graph(graph)
    recipes = list(recipes) if recipes else available_recipes()
    for name in recipes:
        if name != "none":
            _recipe_string(name, base_graph)  # unknown names fail before any work
    precisions = list(precisions) if precisions else ["fp32", "bf16", "bf16-grappler",
                                                      "int8-weights", "int8", "int8@25"]
    for name in precisions:
        if not is_precision(name):
            raise UsageError(f"unknown precision '{name}'; known: {', '.join(PRECISIONS)} "
                             "and int8@DB (int8 with that fallback threshold)")
    int8_names = [p for p in precisions if int8_threshold(p) is not None]
    if int8_names:
        from leangraph.quantization import int8

        if not int8.cpu_supports_int8():
            say(f"{', '.join(int8_names)} requested, but {int8.NO_INT8_CPU}: int8 is left "
                "out and fp32 is kept")
            precisions = [p for p in precisions if p not in int8_names]
    bf16_names = [p for p in precisions if p.startswith("bf16")]
    if bf16_names and not cpu_supports_bf16():
        say(f"{', '.join(bf16_names)} requested, but this CPU has neither AVX512_BF16 nor "
            "AMX-BF16 (or LEANGRAPH_FAKE_NO_BF16 is set): bf16 would be emulated and slow, "
            "so it is left out and fp32 is kept")
        precisions = [p for p in precisions if not p.startswith("bf16")]
    if "fp32" not in precisions:
        precisions.insert(0, "fp32")
    threads = sorted({int(t) for t in threads}) if threads else sorted({1, os.cpu_count() or 1})
    if threads[0] < 1:
        raise UsageError("thread counts must be positive")

    feeds = {input_name: x[:batch_size]}
    variants = {}  # (model, recipe, precision) -> (graph, config, accuracy, bytes) or error
    measured = {}  # key -> Trial
    trials = []
    baseline_accuracy = None

    def measure_accuracy(graph, config):
        result = evaluate(graph, x, y, batch_size=32, input_name=input_name,
                          output_name=output_name, session_config=config,
                          reference=None if y is not None else base_graph)
        return result.accuracy if y is not None else result.top1_agreement

    def variant(model_name, recipe, precision):
        key = (model_name, recipe, precision)
        if key not in variants:
            try:
                graph = models[model_name]
                if recipe != "none":
                    from leangraph.transform import transform

                    graph = transform(graph, _recipe_string(recipe, graph),
                                      inputs=[input_name], outputs=[output_name])
                graph, config = apply_precision(graph, precision, samples=x_calib,
                                                limit=len(x_calib))
                accuracy = measure_accuracy(graph, config)
                variants[key] = (graph, config, accuracy, len(graph.SerializeToString()))
            except LeangraphError as exc:
                variants[key] = exc
        return variants[key]

    def measure(number, key):
        model_name, recipe, precision, n_threads = key
        trial = Trial(number, model_name, recipe, precision, n_threads)
        if key in measured:
            first = measured[key]
            for name in ("latency_ms", "accuracy", "accuracy_drop", "file_bytes", "feasible",
                         "error"):
                setattr(trial, name, getattr(first, name))
            trial.repeat_of = first.number
            return trial
        built = variant(model_name, recipe, precision)
        if isinstance(built, Exception):
            trial.error = str(built)
        else:
            graph, config, accuracy, size = built
            trial.accuracy, trial.file_bytes = accuracy, size
            trial.accuracy_drop = 100.0 * (baseline_accuracy - accuracy)
            trial.feasible = within_budget(baseline_accuracy, accuracy, max_accuracy_drop)
            if too_few and is_calibrated(precision):
                trial.note, trial.feasible = too_few, False
            try:
                trial.latency_ms = float(timer(graph, config, n_threads, feeds))
            except Exception as exc:  # noqa: BLE001 - a variant TF cannot run is a result
                trial.error = f"timing failed: {exc}"
                trial.feasible = False
        measured[key] = trial
        return trial

    def finish(trial):
        trials.append(trial)
        state = "error" if trial.error else ("ok" if trial.feasible else
                                             trial.note or "over budget")
        latency = f"{trial.latency_ms:.3f} ms" if trial.latency_ms is not None else "-"
        accuracy = f"{100 * trial.accuracy:.2f}%" if trial.accuracy is not None else "-"
        log(f"trial {trial.number}: {trial.label()}  {latency}  {accuracy}  {state}"
            + (f" ({trial.error})" if trial.error else ""))
        if record:
            partial = _partial_result(trials, max_accuracy_drop, messages)
            graphs.atomic_write(record, json.dumps(partial, indent=2).encode())

    # The fp32 original at the most threads is trial 0: the reference for the
    # accuracy budget and the fallback answer.
    baseline_key = (ORIGINAL, "none", "fp32", threads[-1])
    baseline_accuracy = variant(ORIGINAL, "none", "fp32")
    if isinstance(baseline_accuracy, Exception):
        raise GraphError(f"the original graph cannot be evaluated: {baseline_accuracy}")
    baseline_accuracy = baseline_accuracy[2]
    if shared is not None:
        return shared.optimize(
            space=list(product(models, recipes, precisions, threads)), baseline_key=baseline_key,
            measure=measure, variant=variant, models=models, recipes=recipes,
            precisions=precisions, threads=threads, x=given[0], y=given[1],
            input_name=input_name,
            output_name=output_name, max_accuracy_drop=max_accuracy_drop, n_trials=n_trials,
            seed=seed, batch_size=batch_size, messages=messages, log=log, record=record)
    baseline = measure(0, baseline_key)
    if baseline.error:
        raise GraphError(f"the original graph cannot be timed: {baseline.error}")
    finish(baseline)

    space = list(product(models, recipes, precisions, threads))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = optuna.samplers.TPESampler(seed=seed)
    study = optuna.create_study(direction="minimize", sampler=sampler)
    remaining = [k for k in space if k != baseline_key]
    if len(remaining) <= n_trials - 1:
        # Small space: measure everything rather than sample it.
        for key in remaining:
            study.enqueue_trial(dict(zip(("model", "recipe", "precision", "threads"), key)))
    budget = min(n_trials - 1, len(remaining))
    penalty = 1e9  # what an over-budget or failed trial tells the sampler

    def objective(optuna_trial):
        key = (
            optuna_trial.suggest_categorical("model", list(models)),
            optuna_trial.suggest_categorical("recipe", recipes),
            optuna_trial.suggest_categorical("precision", precisions),
            optuna_trial.suggest_categorical("threads", threads),
        )
        if key in measured:
            # TPE suggests measured points again; timing one twice would spend the budget
            # on noise, and ranking two timings of one graph against each other misleads.
            raise optuna.TrialPruned()
        trial = measure(len(trials), key)
        finish(trial)
        # The baseline may lie outside the space (recipes without "none").
        if len(trials) - 1 >= budget or len(set(measured) & set(space)) >= len(space):
            optuna_trial.study.stop()
        if not trial.feasible or trial.latency_ms is None:
            return penalty
        return trial.latency_ms

    if budget > 0:
        # Pruned repeats do not count; the cap only bounds a sampler that keeps repeating.
        study.optimize(objective, n_trials=budget * 20)

    feasible = [t for t in trials if t.feasible and t.repeat_of is None and t.latency_ms]
    best = min(feasible, key=lambda t: (t.latency_ms, -t.accuracy))
    if best.threads != baseline.threads:
        say(f"the winner runs on {best.threads} intra-op thread(s), the fp32 baseline on "
            f"{baseline.threads}: part of the difference is the thread count")
    graph, config, _, _ = variants[(best.model, best.recipe, best.precision)]
    result = TuneResult(best, baseline, trials, max_accuracy_drop, messages, graph, config)
    if timer is session_timer and best.key != baseline.key and config is None:
        result.confirmed = _confirm(variants[baseline.key[:3]][0], graph, best, feeds, say)
        if result.confirmed and result.confirmed["speedup_ci95"][1] < 1.0:
            _overrule(result, feasible, variants, say)
    if record:
        result.save_json(record)
    return result


#: The winner's speed-up over the baseline is re-measured in interleaved pairs until
#: its 95 % interval is this narrow (relative), or CONFIRM_MAX_TIME passes.
CONFIRM_TARGET_CI = 0.03
CONFIRM_MAX_TIME = 30.0


def _confirm(baseline_graph, best_graph, best, feeds, say):
    """The trials rank on p50s of separate runs; the claimed speed-up is measured side by side."""
    from leangraph import bench

    try:
        c = bench.compare(baseline_graph, best_graph, feeds, runs=20, warmup=3,
                          target_ci=CONFIRM_TARGET_CI, max_time=CONFIRM_MAX_TIME,
                          threads=best.threads)
    except LeangraphError as exc:
        say(f"the confirming comparison failed: {exc}")
        return None
    lo, hi = c.speedup_ci95
    say(f"{best.label()} vs the baseline, re-timed in {c.pairs} interleaved pairs: "
        f"{c.speedup:.2f}x faster [95 % CI {lo:.2f}, {hi:.2f}]"
        + ("" if c.target_met else " (interval target not met: a noisy machine)"))
    return {"speedup": c.speedup, "speedup_ci95": [lo, hi], "pairs": c.pairs,
            "target_met": c.target_met, "threads": best.threads}


def _overrule(result, feasible, variants, say):
    """The pairs found the winner slower than the baseline's graph on the winner's threads:
    its lead in the trials was the thread count (or noise), so that graph on those threads
    is the result, where it was timed."""
    best, confirmed = result.best, result.confirmed
    lo, hi = confirmed["speedup_ci95"]
    same = next((t for t in feasible
                 if t.key == result.baseline.key[:3] + (best.threads,)), None)
    said = (f"in interleaved pairs on {best.threads} thread(s), {best.label()} runs at "
            f"{confirmed['speedup']:.2f}x the baseline graph's speed [95 % CI {lo:.2f}, "
            f"{hi:.2f}]: slower")
    lead = ("the thread count" if best.threads != result.baseline.threads
            else "the noise of separate timings")
    if same is None or same is best:
        say(f"{said}; its lead in the trials was {lead}, and the baseline graph was not timed "
            f"on {best.threads} thread(s)")
        return
    say(f"{said}, so its lead in the trials was {lead}: {same.label()} is the result")
    result.best = same
    result.best_graph, result.best_session_config = variants[same.key[:3]][:2]
    confirmed["overruled"] = best.label()


def _split(x, y, verify_samples, calibration_samples, say):
    """(x, y held out for scoring, the calibration examples, why calibrated precisions are
    only timed or None): pipeline.data's seeded split, so calibration never sees what
    every variant is scored on. Too few examples to split: all of them score, and the
    calibrated precisions calibrate on them too, which makes their score no verdict."""
    from leangraph.pipeline import data as data_reader

    parts = data_reader.split(len(x), verify_samples or data_reader.DEFAULT_VERIFY_SAMPLES,
                              calibration_samples or data_reader.DEFAULT_CALIBRATION_SAMPLES)
    if not parts.held_out:
        note = data_reader.too_few_note(len(x))
        say(f"{len(x)} examples: int8 variants are {note}")
        return x, y, x, note
    held = parts.verification
    say(f"scoring on {len(held)} held-out examples; int8 calibrates on "
        f"{len(parts.calibration)} others (seed {parts.seed})")
    return x[held], None if y is None else np.asarray(y)[held], x[parts.calibration], None


def _partial_result(trials, budget, messages):
    return {
        "max_accuracy_drop": budget,
        "messages": list(messages),
        "trials": [asdict(t) for t in trials],
        "complete": False,
    }
