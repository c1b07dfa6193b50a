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
from itertools import product

from leangraph import graphs
from leangraph import recipes as recipes_module
from leangraph._extras import require
from leangraph.errors import GraphError, LeangraphError, UsageError
from leangraph.metrics import Gates
from leangraph.pipeline import precisions as registry
from leangraph.pipeline.confirm import confirm, not_worth_it, overrule
from leangraph.pipeline.model import graph_def_of
from leangraph.pipeline.scoring import Judge, read_examples, split_examples
from leangraph.pipeline.timing import session_timer
from leangraph.recipes import recipe_for
from leangraph.search.trials import ORIGINAL, Trial, TuneResult, best_of, partial_result
from leangraph.transform import transform


__all__ = ["ORIGINAL", "Trial", "TuneResult", "session_timer", "tune"]

#: What tune searches without --precisions: leangraph's int8 at two fallback thresholds.
DEFAULT_PRECISIONS = ("fp32", "bf16", "bf16-grappler", "int8-weights", "int8", "int8@25")


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
    recipes: names from leangraph.RECIPES, or "none" (default: all). precisions: names
        from pipeline.precisions.PRECISIONS, int8@DB included (default fp32, bf16, bf16-grappler,
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
    # Every name is read once, before the model and data are (an unknown one fails first).
    choices = {}
    for name in precisions or DEFAULT_PRECISIONS:
        choice = registry.choose(name)
        choices.setdefault(choice.name, choice)
    if "fp32" not in choices:  # the baseline, always searched, first
        choices = {"fp32": registry.choose("fp32"), **choices}
    base_graph = graph_def_of(model)
    chosen = ([input_name] if input_name else None, [output_name] if output_name else None)
    input_names, output_infos, data = read_examples(base_graph, x, y, *chosen, limit=limit)
    output_names = [o.name for o in output_infos]
    given = data  # what a shared study fingerprints: the user's data, not the split
    held, x_calib, too_few = split_examples(data, verify_samples, calibration_samples, say)
    if calibration is not None:
        x_calib = read_examples(base_graph, calibration, None, *chosen, what="calibration")[2]
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
    recipes = list(recipes) if recipes else ["none"] + sorted(recipes_module.RECIPES)
    for name in recipes:
        if name != "none":
            recipe_for(name, base_graph)  # unknown names fail before any work
    unavailable = {name: choice.precision.unavailable() for name, choice in choices.items()}
    missing = {}
    for name, why in unavailable.items():
        if why:
            missing.setdefault(why, []).append(name)
    for why, names in missing.items():
        say(f"{', '.join(names)} requested, but {why}: left out, and fp32 is kept")
    precisions = [name for name, why in unavailable.items() if not why]
    threads = sorted({int(t) for t in threads}) if threads else sorted({1, os.cpu_count() or 1})
    if threads[0] < 1:
        raise UsageError("thread counts must be positive")

    feeds = {name: x[:batch_size] for name, x in zip(input_names, data.arrays)}
    variants = {}  # (model, recipe, precision) -> (graph, config, Score, bytes) or error
    measured = {}  # key -> Trial
    trials = []

    def variant(model_name, recipe, precision):
        key = (model_name, recipe, precision)
        if key not in variants:
            try:
                graph = models[model_name]
                if recipe != "none":
                    graph = transform(graph, recipe_for(recipe, graph),
                                      inputs=input_names, outputs=output_names)
                choice = choices[precision]
                graph, config, _ = choice.build(graph, (input_names, output_names),
                                                x_calib.arrays if x_calib.count else None)
                candidate = model_name != ORIGINAL
                scored = judge(graph, config, lossy=choice.lossy or candidate,
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
            if too_few and choices[precision].precision.calibrated:
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
            partial = partial_result(trials, max_accuracy_drop, messages)
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
        result.confirmed = confirm(variants[baseline.key[:3]][0], graph, best, feeds, say)
        why = result.confirmed and not_worth_it(best.precision,
                                                result.confirmed["speedup_ci95"])
        if why:
            overrule(result, feasible, variants, say, why)
    if record:
        result.save_json(record)
    return result


