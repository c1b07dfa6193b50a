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


from leangraph import graphs
from leangraph.errors import GraphError, LeangraphError, UsageError
from leangraph.hardware import cpu_supports_bf16
from leangraph import metrics
from leangraph.metrics import Gates
from leangraph.precision import (
    PRECISIONS,
    apply_precision,
    int8_threshold,
    is_calibrated,
    is_precision,
    predict,
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
    #: what ranks the trials: accuracy (with labels), top-1 agreement with the original,
    #: MAE, or SQNR dB against the original (a regression output without labels)
    metric: str | None = None
    score: float | None = None
    higher_is_better: bool = True
    #: every gate on every output (metrics.OutputCheck as dicts)
    checks: list | None = None

    @property
    def key(self):
        return (self.model, self.recipe, self.precision, self.threads)

    def label(self):
        return f"{self.model}/{self.recipe}/{self.precision}/t{self.threads}"

    @property
    def quality(self):
        """The score, larger is better (MAE negated)."""
        if self.score is None:
            return float("-inf")
        return self.score if self.higher_is_better else -self.score

    def shown_score(self):
        return shown_score(self.metric, self.score)


def shown_score(metric, score):
    """A trial's score in words: '97.50 %', 'MAE 0.0123', 'SQNR 41.2 dB'."""
    if score is None:
        return "-"
    if metric == "MAE":
        return f"MAE {score:.4g}"
    if metric == "SQNR dB":
        return "exact" if score >= SQNR_CAP_DB else f"SQNR {score:.1f} dB"
    return f"{100 * score:.2f} %"


#: SQNR against the original is reported up to this (an exact copy's is infinite).
SQNR_CAP_DB = 200.0


def best_of(trials):
    """The fastest feasible trial (the better score breaking ties)."""
    feasible = [t for t in trials if t.feasible and t.repeat_of is None and t.latency_ms]
    return min(feasible, key=lambda t: (t.latency_ms, -t.quality))


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
                and o.quality >= t.quality
                and (o.latency_ms < t.latency_ms or o.quality > t.quality)
                for o in points
            )
            if not dominated:
                front.append(t)
        return sorted(front, key=lambda t: (t.latency_ms, -t.quality))

    def table(self):
        """The Pareto front as a text table, with the baseline and the winner marked."""
        rows = [("", "model", "recipe", "precision", "threads", "p50 ms", "speedup",
                 self.baseline.metric or "score", "drop pts", "file KB")]
        for t in self.pareto():
            mark = ("*" if t is self.best else "") + ("=" if t is self.baseline else "")
            if not t.feasible:
                mark += "x"
            rows.append((
                mark, t.model, t.recipe, t.precision, str(t.threads), f"{t.latency_ms:.3f}",
                f"{self.baseline.latency_ms / t.latency_ms:.2f}x", t.shown_score(),
                "-" if t.accuracy_drop is None else f"{t.accuracy_drop:+.2f}",
                f"{(t.file_bytes or 0) / 1024:.0f}",
            ))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
        lines.append(
            f"* best within budget ({self.max_accuracy_drop} points; every output gated by "
            "its kind); = fp32 baseline; x over budget"
        )
        return "\n".join(lines)

    def best_line(self):
        """The winner in one line: configuration, latency, speed-up and score."""
        best = self.best
        drop = ("" if best.accuracy_drop is None
                else f" ({best.accuracy_drop:+.2f} points)")
        return (f"{best.label()} {best.latency_ms:.3f} ms "
                f"({self.baseline.latency_ms / best.latency_ms:.2f}x the fp32 original), "
                f"{best.metric or 'score'} {best.shown_score()}{drop}")

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

        points = [t for t in self.measured() if t.score is not None]
        fraction = self.baseline.metric not in ("MAE", "SQNR dB")

        def shown(t):
            if not fraction:
                return min(t.score, SQNR_CAP_DB)
            return 100 * t.score

        fig, ax = plt.subplots(figsize=(7, 4.5))
        for feasible, colour, name in ((True, "tab:blue", "within budget"),
                                       (False, "tab:red", "over budget")):
            group = [t for t in points if t.feasible == feasible]
            if group:
                ax.scatter([t.latency_ms for t in group], [shown(t) for t in group],
                           c=colour, label=name, alpha=0.7)
        front = [t for t in self.pareto() if t.score is not None]
        ax.plot([t.latency_ms for t in front], [shown(t) for t in front],
                "k--", lw=1, label="Pareto front")
        if fraction and self.baseline.score is not None:
            floor = 100 * self.baseline.score - self.max_accuracy_drop
            ax.axhline(floor, color="tab:red", lw=0.8, ls=":", label="accuracy budget")
        if self.best.score is not None:
            ax.annotate("best", (self.best.latency_ms, shown(self.best)),
                        textcoords="offset points", xytext=(6, 6))
        ax.set_xlabel("p50 latency (ms)")
        ax.set_ylabel(f"{self.baseline.metric or 'score'}" + (" (%)" if fraction else ""))
        ax.set_title(f"leangraph tune: latency vs {self.baseline.metric or 'score'}")
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


def tune(model, x, y=None, *, max_accuracy_drop=0.5, max_mae_increase=0.1, tolerance=1e-4,
         output_kinds=None, gates=None, calibration=None, n_trials=24, recipes=None,
         precisions=None, threads=None, candidates=None, batch_size=1, seed=0,
         record=None, timer=None, input_name=None, output_name=None, log=None, shared=None,
         verify_samples=None, calibration_samples=None, limit=None):
    """Searches model x recipe x precision x threads for the fastest variant within budget.

    model: any form leangraph.load_model() takes (a frozen graph, a Keras file or
        model, a SavedModel directory, ...). x: the examples, in any form
        pipeline.data.read takes (an array for a one-input model, {input: array},
        an .npz/.npy path or folder, a tf.data.Dataset). y: labels of the first
        output, or {output: labels} (or put them in x's .npz as y / y_<output>).
    Every output is gated against the fp32 original by its kind, as optimize
        gates it (leangraph.metrics.Gates; output_kinds {name: kind} and gates
        {name: "[GATE:]VALUE"} override): recipes on fp32 within `tolerance`
        (relative), lossy precisions by the kind's gate and SQNR >= 20 dB.
        With labels, every labelled output is also held to the budget against
        the original's score: max_accuracy_drop percentage points of accuracy,
        or max_mae_increase (relative) of MAE for a regression output. Without
        labels the trials rank on the first output's top-1 agreement with the
        original (SQNR for a regression output), within max_accuracy_drop points.
    input_name / output_name: evaluate only this input / output (default all).
    calibration: examples the int8 precisions calibrate on instead of a split of x.
    limit: use only the first `limit` examples of x.
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
        searched the same way and held to the same budget; with labels, the
        label budget alone judges them (they are meant to compute something
        else), without labels they are gated as lossy variants.
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
    chosen = ([input_name] if input_name else None, [output_name] if output_name else None)
    input_names, output_infos, data = _read(base_graph, x, y, *chosen, limit=limit)
    output_names = [o.name for o in output_infos]
    given = data  # what a shared study fingerprints: the user's data, not the split
    held, x_calib, too_few = _split(data, verify_samples, calibration_samples, say)
    if calibration is not None:
        x_calib = _read(base_graph, calibration, None, *chosen, what="calibration")[2]
        say(f"int8 calibrates on the {x_calib.count} calibration example(s) given")
    judge = Judge(base_graph, held, input_names, output_infos,
                  Gates.for_graph(base_graph, output_infos, tolerance, output_kinds,
                                  gates).read_labels(data.labels),
                  max_accuracy_drop=max_accuracy_drop, max_mae_increase=max_mae_increase)
    say(f"trials rank on {judge.baseline.metric}"
        + ("" if data.labels else " (no labels: against the fp32 original)")
        + "; every output is gated by its kind: "
        + ", ".join(f"{n} ({k})" for n, k in zip(judge.gates.names, judge.gates.kinds)))

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

    feeds = {name: x[:batch_size] for name, x in zip(input_names, data.arrays)}
    variants = {}  # (model, recipe, precision) -> (graph, config, Score, bytes) or error
    measured = {}  # key -> Trial
    trials = []
    calib_feeds = _calibration_feeds(input_names, x_calib)

    def variant(model_name, recipe, precision):
        key = (model_name, recipe, precision)
        if key not in variants:
            try:
                graph = models[model_name]
                if recipe != "none":
                    from leangraph.transform import transform

                    graph = transform(graph, _recipe_string(recipe, graph),
                                      inputs=input_names, outputs=output_names)
                graph, config = apply_precision(graph, precision, samples=calib_feeds,
                                                limit=x_calib.count)
                candidate = model_name != ORIGINAL
                scored = judge(graph, config, lossy=precision != "fp32" or candidate,
                               gated=not (candidate and held.labels))
                variants[key] = (graph, config, scored,
                                 len(graph.SerializeToString()))
            except LeangraphError as exc:
                variants[key] = exc
        return variants[key]

    def measure(number, key):
        model_name, recipe, precision, n_threads = key
        trial = Trial(number, model_name, recipe, precision, n_threads)
        if key in measured:
            first = measured[key]
            for name in ("latency_ms", "accuracy", "accuracy_drop", "file_bytes", "feasible",
                         "error", "note", "metric", "score", "higher_is_better", "checks"):
                setattr(trial, name, getattr(first, name))
            trial.repeat_of = first.number
            return trial
        built = variant(model_name, recipe, precision)
        if isinstance(built, Exception):
            trial.error = str(built)
        else:
            graph, config, scored, size = built
            trial.file_bytes = size
            scored.fill(trial, judge.baseline)
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
        log(f"trial {trial.number}: {trial.label()}  {latency}  {trial.shown_score()}  {state}"
            + (f" ({trial.error})" if trial.error else ""))
        if record:
            partial = _partial_result(trials, max_accuracy_drop, messages)
            graphs.atomic_write(record, json.dumps(partial, indent=2).encode())

    # The fp32 original at the most threads is trial 0: the reference for the
    # accuracy budget and the fallback answer.
    baseline_key = (ORIGINAL, "none", "fp32", threads[-1])
    original = variant(ORIGINAL, "none", "fp32")
    if isinstance(original, Exception):
        raise GraphError(f"the original graph cannot be evaluated: {original}")
    if shared is not None:
        return shared.optimize(
            space=list(product(models, recipes, precisions, threads)), baseline_key=baseline_key,
            measure=measure, variant=variant, models=models, recipes=recipes,
            precisions=precisions, threads=threads, x=given.arrays, y=given.labels,
            input_names=input_names, output_names=output_names, output_kinds=output_kinds,
            max_accuracy_drop=max_accuracy_drop, n_trials=n_trials,
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
    best = best_of(trials)
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


def _read(graph, x, y, inputs=None, outputs=None, what="x", limit=None):
    """(input names, output TensorInfos, pipeline.data.Data) of the examples tune scores:
    these inputs and outputs (names), by default every one of the graph's."""
    from leangraph.freezing.clean import _tensor_infos
    from leangraph.pipeline import data as data_reader

    inputs = [graphs.node_name(n) for n in inputs or graphs.default_inputs(graph)]
    outputs = [graphs.node_name(n) for n in outputs or graphs.default_outputs(graph)]
    infos = _tensor_infos(graph, list(inputs) + list(outputs))
    in_infos, out_infos = infos[:len(inputs)], infos[len(inputs):]
    source = x
    if y is not None:
        if isinstance(x, (str, os.PathLike)) or isinstance(x, data_reader.Data):
            raise UsageError("give the labels inside the data (y or y_<output> in the .npz), "
                             "not beside a path")
        if isinstance(x, dict):
            arrays = dict(x)
        elif isinstance(x, (list, tuple)) and len(inputs) > 1:
            arrays = {i.name: a for i, a in zip(in_infos, x)}
        else:
            arrays = {"x": x}
        if isinstance(y, dict):
            arrays.update({f"y_{name}": labels for name, labels in y.items()})
        else:
            arrays["y"] = y
        source = arrays
    if isinstance(x, (str, os.PathLike)):
        what = "--data" if what == "x" else f"--{what}-data"
    data = data_reader.read(source, in_infos, out_infos, what=what, limit=limit)
    return inputs, out_infos, data


def _calibration_feeds(input_names, data):
    """What apply_precision calibrates on: the one input's array, or {input: array}."""
    if data is None or data.count == 0:
        return None
    if len(input_names) == 1:
        return data.arrays[0]
    return dict(zip(input_names, data.arrays))


def _split(data, verify_samples, calibration_samples, say):
    """(the held-out Data every variant is scored on, the calibration Data, why calibrated
    precisions are only timed or None): pipeline.data's seeded split, so calibration
    never sees what every variant is scored on. Too few examples to split: all of them
    score, and the calibrated precisions calibrate on them too, which makes their score
    no verdict."""
    from leangraph.pipeline import data as data_reader

    n = data.count
    parts = data_reader.split(n, verify_samples or data_reader.DEFAULT_VERIFY_SAMPLES,
                              calibration_samples or data_reader.DEFAULT_CALIBRATION_SAMPLES)
    if not parts.held_out:
        note = data_reader.too_few_note(n)
        say(f"{n} examples: int8 variants are {note}")
        return data, data, note
    held = parts.verification
    say(f"scoring on {len(held)} held-out examples; int8 calibrates on "
        f"{len(parts.calibration)} others (seed {parts.seed})")
    return data.take(held), data.take(parts.calibration), None


@dataclass
class Score:
    """How one variant did on the held-out examples (Judge)."""

    metric: str
    value: float
    higher_is_better: bool
    checks: list
    #: every gate and budget it failed, in one line, or None
    failure: str | None

    @property
    def is_fraction(self):
        return self.metric not in ("MAE", "SQNR dB")

    def fill(self, trial, baseline):
        """Writes the score into a Trial, its drop against the baseline's Score."""
        trial.metric, trial.score = self.metric, self.value
        trial.higher_is_better = self.higher_is_better
        trial.checks = [c.to_dict() for c in self.checks]
        if self.is_fraction:
            trial.accuracy = self.value
            trial.accuracy_drop = 100.0 * (baseline.value - self.value)
        trial.feasible = self.failure is None
        if self.failure:
            trial.note = self.failure


class Judge:
    """Scores variants against the fp32 original on the held-out examples, every output
    gated by its kind and every labelled output held to the budget (leangraph.metrics:
    the same gates and budget optimize applies). The primary score, which ranks the
    trials, is the first labelled output's accuracy or MAE, or without labels the first
    output's agreement with the original (SQNR dB for a regression output)."""

    def __init__(self, base_graph, held, input_names, output_infos, gates, *,
                 max_accuracy_drop=0.5, max_mae_increase=0.1, batch_size=32):
        self.held, self.input_names, self.gates = held, input_names, gates
        self.output_names = [o.name for o in output_infos]
        self.max_accuracy_drop, self.max_mae_increase = max_accuracy_drop, max_mae_increase
        self.batch_size = batch_size
        self.reference = self.outputs(base_graph, None)
        self.reference_scores = metrics.label_scores(gates.names, gates.kinds, self.reference,
                                                     held.labels)
        self.baseline = self._score(self.reference, [], [])

    def outputs(self, graph, config):
        return predict(graph, self.held.arrays, self.input_names, self.output_names,
                       self.batch_size, config)

    def __call__(self, graph, config, lossy, gated=True):
        """The Score of one variant. gated False: only the label budget judges it (a
        candidate model with labels, which is meant to compute something else)."""
        outputs = self.outputs(graph, config)
        checks = self.gates.checks(outputs, self.reference, lossy) if gated else []
        failures = [metrics.failure(checks)] if metrics.failure(checks) else []
        scores = metrics.label_scores(self.gates.names, self.gates.kinds, outputs,
                                      self.held.labels)
        failures += metrics.budget_failures(scores, self.reference_scores,
                                            self.max_accuracy_drop, self.max_mae_increase)
        return self._score(outputs, checks, failures, scores)

    def _score(self, outputs, checks, failures, scores=None):
        scores = self.reference_scores if scores is None else scores
        if scores:
            first = scores[0]
            return Score(first["metric"], first["value"], first["higher_is_better"], checks,
                         "; ".join(failures) or None)
        kind, out, ref = self.gates.kinds[0], outputs[0], self.reference[0]
        if kind == "regression":
            value = min(metrics.sqnr_db(ref, out), SQNR_CAP_DB)
            return Score("SQNR dB", value, True, checks, "; ".join(failures) or None)
        value = metrics.agreement(out, ref, kind)
        if not metrics.within_budget(1.0, value, self.max_accuracy_drop):
            failures = failures + [f"agreement with the original {100 * value:.2f} % is more "
                                   f"than {self.max_accuracy_drop:g} points below 100 %"]
        return Score(f"{_AGREEMENT_NAMES[kind]}", value, True, checks,
                     "; ".join(failures) or None)


_AGREEMENT_NAMES = {"classes": "top-1 agreement", "binary": "class agreement",
                    "multilabel": "label agreement"}


def _partial_result(trials, budget, messages):
    return {
        "max_accuracy_drop": budget,
        "messages": list(messages),
        "trials": [asdict(t) for t in trials],
        "complete": False,
    }
