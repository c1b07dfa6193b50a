"""`leangraph.prune`: remove channels, fine-tune by distillation, report what it cost."""

import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from leangraph.errors import PruneError
from leangraph.prune.scoring import Scoring, drop, shown
from leangraph.pipeline.data import MIN_SPLIT, too_few_note
from leangraph.prune import criteria as C
from leangraph.prune import distill as D
from leangraph.prune import groups as G
from leangraph.prune import rebuild as R
from leangraph.prune.summary import ReductionSummary


@dataclass
class PruneReport(ReductionSummary):
    model: str
    criterion: str
    target_macs: float | None
    max_accuracy_drop: float | None
    macs_before: int
    macs_after: int
    params_before: int
    params_after: int
    accuracy_before: float  # held-out, 0..1 (top-1 agreement with the original without labels)
    accuracy_after: float
    accuracy_unfinetuned: float
    labels: bool
    metric: str  # what the scores measure (prune.scoring.Scoring.name)
    n_train: int
    n_held_out: int
    prunable_share: float  # of conv/matmul MACs
    groups: list = field(default_factory=list)
    unsupported: list = field(default_factory=list)
    distill: dict = field(default_factory=dict)
    search: dict = field(default_factory=dict)
    int8: dict = field(default_factory=dict)  # int8-ready check and quantization-aware fine-tune
    seconds: float = 0.0
    source: str | None = None  # the pruned model's path, when it was given as one
    kind: str = "leangraph prune"

    def to_markdown(self):
        what = self.metric
        lines = [
            f"# leangraph prune: {self.model}",
            "",
            f"Criterion `{self.criterion}`; held-out {what} on {self.n_held_out} examples "
            f"({self.n_train} used for fine-tuning).",
            "",
            "| | before | after | ratio |",
            "| --- | --- | --- | --- |",
            f"| MACs per example | {self.macs_before:,} | {self.macs_after:,} | "
            f"{self.macs_ratio:.3f} |",
            f"| parameters | {self.params_before:,} | {self.params_after:,} | "
            f"{self.params_after / max(1, self.params_before):.3f} |",
            "| " + " | ".join(self.score_rows()) + " |",
            "",
            f"Without fine-tuning: {shown(self.metric, self.accuracy_unfinetuned)}. "
            f"Distillation: {self.distill.get('epochs', 0):.1f} epochs, "
            f"{self.distill.get('seconds', 0):.0f} s ({self.distill.get('stopped', '')}).",
            f"Share of conv/matmul MACs in prunable groups: {100 * self.prunable_share:.1f} %.",
            "",
            "| group | producers | channels | kept |",
            "| --- | --- | --- | --- |",
        ]
        for g in self.groups:
            names = ", ".join(g["producers"])
            if len(names) > 80:
                names = names[:77] + "..."
            kept = g["kept"] if g["prunable"] else "frozen"
            lines.append(f"| {g['index']} | {names} | {g['channels']} | {kept} |")
        if self.unsupported:
            lines += ["", "Left whole (not understood, so never pruned):", ""]
            lines += [f"- `{name}` ({cls}): {reason}" for name, cls, reason in self.unsupported]
        if self.search:
            lines += ["", f"Search: {self.search.get('summary', '')}"]
        if self.int8:
            lines += ["", f"int8 (post-training, held out): "
                          f"{shown(self.metric, self.int8['post_training'])} against float "
                          f"{shown(self.metric, self.int8['float'])} (budget "
                          f"{self.int8['max_drop']:g} points); {self.int8['decision']}"]
        return "\n".join(lines) + "\n"


def _count_params(model):
    return int(sum(int(np.prod(v.shape)) for v in model.weights))


def check_data(model, x, y, scoring=None):
    """x as float32 and y as the labels the output's kind takes (prune.scoring; class
    indices for a classifier), or None; or a one-line PruneError."""
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise PruneError(f"the model has {len(model.inputs)} inputs and {len(model.outputs)} "
                         "outputs; pruning needs one of each")
    x = np.asarray(x)
    want = tuple(model.inputs[0].shape[1:])
    got = tuple(x.shape[1:])
    if x.ndim != len(want) + 1 or any(w is not None and w != g for w, g in zip(want, got)):
        raise PruneError(f"data x has examples of shape {got} but the model takes "
                         f"{tuple('?' if w is None else w for w in want)}")
    if len(x) < 8:
        raise PruneError(f"data x has {len(x)} examples; at least 8 are needed "
                         "(15 % are held out)")
    if not np.issubdtype(x.dtype, np.number):
        raise PruneError(f"data x has dtype {x.dtype}; numbers are needed")
    x = x.astype(np.float32, copy=False)
    if y is None:
        return x, None
    scoring = scoring or Scoring.for_model(model, y)
    return x, scoring.check_labels(y, len(x), model.outputs[0].shape[-1])


def split(n, holdout, seed):
    """(train indices, held-out indices): a seeded shuffle, `holdout` of it held out."""
    if not 0.0 < holdout < 1.0:
        raise PruneError(f"holdout must be in (0, 1), got {holdout}")
    order = np.random.default_rng(seed).permutation(n)
    n_val = max(1, int(round(n * holdout)))
    return order[n_val:], order[:n_val]


def _round_keep(ratio, channels, multiple):
    keep = max(1, math.ceil(ratio * channels - 1e-9))
    if multiple > 1 and channels >= 2 * multiple:
        keep = max(multiple, int(round(keep / multiple)) * multiple)
    return min(channels, keep)


def uniform_keep(graph, ratio, multiple=8):
    return {g.index: _round_keep(ratio, g.channels, multiple) for g in graph.prunable_groups}


def plan_for_macs(graph, scores, target, multiple=8):
    """The plan keeping the same share of every group whose MACs are at most `target` x."""
    base = graph.macs()
    budget = target * base
    floor = R.plan_from_scores(graph, scores, uniform_keep(graph, 0.0, multiple))
    if floor.macs() > budget:
        raise PruneError(
            f"target_macs {target:g} is out of reach: removing all but the last channels of "
            f"every prunable group leaves {floor.macs() / base:.3f} of the MACs "
            f"({100 * graph.prunable_share():.0f} % of them are in prunable groups)")
    best, lo, hi = floor, 0.0, 1.0
    keep = uniform_keep(graph, 0.0, multiple)
    for _ in range(24):
        mid = (lo + hi) / 2
        trial = uniform_keep(graph, mid, multiple)
        plan = R.plan_from_scores(graph, scores, trial)
        if plan.macs() <= budget:
            best, keep, lo = plan, trial, mid
        else:
            hi = mid
    # Rounding to whole multiples leaves budget unused on small models: spend it one step
    # at a time on the group cut deepest so far.
    while True:
        for group in sorted(graph.prunable_groups, key=lambda g: keep[g.index] / g.channels):
            step = multiple if group.channels >= 2 * multiple else 1
            grown = min(group.channels, keep[group.index] + step)
            if grown == keep[group.index]:
                continue
            trial = {**keep, group.index: grown}
            plan = R.plan_from_scores(graph, scores, trial)
            if plan.macs() <= budget:
                best, keep = plan, trial
                break
        else:
            return best


def group_rows(graph, plan):
    rows = []
    for g in graph.groups:
        rows.append({"index": g.index, "producers": list(g.producers), "channels": g.size,
                     "removable": g.channels, "prunable": g.prunable,
                     "kept": g.size - (g.channels - plan.kept(g)) if plan else g.size,
                     "frozen": list(g.frozen)})
    return rows


def int8_score(model, x_calib, x_val, y_val=None, reference=None, batch=32, scoring=None):
    """The held-out score (prune.scoring) of `model`'s post-training int8 graph
    (leangraph.quantize of its frozen deploy graph, calibrated on `x_calib`)."""
    from leangraph.runner import run
    from leangraph.prune.search import deploy_graph
    from leangraph.quantization.calibrate import padded
    from leangraph.quantization.int8 import quantize

    graph_def, name, outputs = deploy_graph(model, batch)
    quantized = quantize(graph_def, x_calib, outputs=outputs, require_int8_cpu=False).graph_def
    parts = []
    for start in range(0, len(x_val), batch):
        n = len(x_val[start:start + batch])
        # The graph is frozen at `batch`: the last one is filled up.
        parts.append(run(quantized, padded({name: x_val[start:start + batch]}, batch),
                         outputs)[0][:n])
    if not parts:
        return 0.0
    scoring = scoring or Scoring.for_model(model, y_val)
    return scoring(np.concatenate(parts), y_val, reference)


def int8_ready(model, teacher, x_train, x_val, y_train, y_val, reference, config, *,
               max_drop=0.5, qat_epochs=3, calibration=64):
    """Checks `model`'s post-training int8 score; fine-tunes it through fake quantization
    when int8 is over the budget (max_drop points, or the MAE or SQNR budget of a
    regression output: prune.scoring). Returns what it found."""
    from leangraph.quantization.qat import FakeQuant

    if not max_drop >= 0:
        raise PruneError(f"int8_max_drop must be >= 0 points, got {max_drop}")
    if qat_epochs < 0:
        raise PruneError(f"qat_epochs must be >= 0, got {qat_epochs}")
    x_calib = x_train[:calibration]
    scoring = config.scoring or Scoring.for_model(model, y_val)
    float_score = D.score(model, x_val, y_val, reference, scoring=scoring)
    ptq = int8_score(model, x_calib, x_val, y_val, reference, scoring=scoring)
    info = {"float": float_score, "post_training": ptq, "max_drop": max_drop,
            "metric": scoring.name, "calibration": len(x_calib), "qat": None}
    within = scoring.within(float_score, ptq, max_drop)
    given = len(x_train) + len(x_val)
    if given < MIN_SPLIT:
        # Calibration and the held-out score would share examples or rest on a handful.
        info["decision"] = too_few_note(given)
        return info
    if within or qat_epochs == 0 or len(x_train) == 0:
        info["decision"] = ("post-training int8 is within the budget" if within else
                            "over the budget, but no quantization-aware epochs were allowed")
        return info
    saved = model.get_weights()
    qat_config = D.DistillConfig(**{**asdict(config), "epochs": qat_epochs,
                                    "learning_rate": config.learning_rate * 0.1})
    fake = FakeQuant(model, x_train[:256])
    trained = D.distill(model, teacher, x_train, x_val, y_train, y_val, qat_config,
                        fake_quant=fake)
    after = int8_score(model, x_calib, x_val, y_val, reference, scoring=scoring)
    info["qat"] = {**asdict(trained), "post_training_after": after,
                   "float_after": D.score(model, x_val, y_val, reference, scoring=scoring)}
    name = scoring.name
    lost, unit = drop(name, float_score, ptq)
    if after > ptq:
        info["decision"] = (f"post-training int8 lost {lost:.2f} {unit}; after "
                            f"quantization-aware fine-tuning int8 scores {shown(name, after)} "
                            f"(was {shown(name, ptq)}): kept")
    else:
        model.set_weights(saved)
        info["decision"] = (f"quantization-aware fine-tuning did not help int8 "
                            f"({shown(name, after)} vs {shown(name, ptq)}): the weights before "
                            "it are kept")
    return info


def _print_trial(t):
    mark = "ok  " if t.feasible else "over"
    print(f"trial {t.number:2d} {mark} latency {t.latency_ms:8.3f} ms  MACs {t.macs_ratio:.3f}x  "
          f"held-out drop {t.accuracy_drop:+.2f} points", flush=True)


def _load(model, unsafe):
    import keras

    if isinstance(model, keras.Model):
        return model
    from leangraph.freeze import load_keras

    return load_keras(model, unsafe=unsafe)


def prune(model, x, y=None, *, target_macs=None, max_accuracy_drop=None, criterion="l2",
          epochs=10, seconds=None, temperature=4.0, alpha=0.7, patience=3, batch_size=32,
          learning_rate=1e-3, holdout=0.15, channel_multiple=8, n_trials=12, trial_epochs=1,
          recalibrate=True, seed=0, progress=True, unsafe=False, storage=None, study=None,
          worker=False, resume=False, wait=60.0, heartbeat=10, int8=False, int8_max_drop=0.5,
          qat_epochs=3, method="channels", batch=1, output_kind=None, max_mae_increase=0.1):
    """Prunes a Keras model's channels; returns (pruned Keras model, PruneReport).

    method: "channels" (this), "lowrank" (factorise Dense and Conv2D layers where
    the timer says it pays at `batch`: leangraph.prune.lowrank.lowrank, which
    returns a LowRankReport) or "both" (channels first, then low-rank, each
    given half the accuracy budget or the square root of the MACs share).

    Give `target_macs` (keep that share of the MACs, 0..1) or
    `max_accuracy_drop` (percentage points; searches per-group ratios for the
    lowest measured latency within that loss). `y` (labels: class indices
    for a classifier, 0/1 for a sigmoid output, values for a regression
    output) is optional: without it the held-out score is agreement with the
    original. The output is scored, budgeted and distilled by its kind
    (leangraph.prune.scoring; `output_kind` overrides what its activation
    says): a regression output's budget is `max_mae_increase` (relative MAE)
    with labels, SQNR >= 20 dB against the original without. 15 % of the data (`holdout`) is held out for early stopping and
    for the accuracy the report states. `recalibrate` re-estimates the batch
    norms' statistics of the pruned model before fine-tuning (kept when they
    score better held out).

    int8: also make the pruned model int8-ready: its post-training int8 graph
    (leangraph.quantize of its frozen `deploy` graph, calibrated on training
    inputs) is scored held out, and when it loses more than `int8_max_drop`
    points against the float model, the model is fine-tuned again for
    `qat_epochs` by the same distillation through fake quantization
    (leangraph.quantization.qat), kept only if its int8 graph then scores better.

    storage, study: share the search (max_accuracy_drop) with other processes
    through an Optuna storage (postgresql://, mysql://, sqlite:///, or a
    journal file): the first process makes the study, `worker=True` joins it
    (waiting up to `wait` seconds), `resume=True` continues one whose workers
    have stopped. n_trials then counts COMPLETE trials study-wide, and every
    process returns the study's best candidate, fine-tuned.
    """
    started = time.monotonic()
    if method not in ("channels", "lowrank", "both"):
        raise PruneError(f"unknown method {method!r}; choose channels, lowrank or both")
    if method != "channels":
        if storage is not None or worker or resume:
            raise PruneError("a shared study is the channel search's; it needs method 'channels'")
        from leangraph.prune.lowrank.api import after_channels, lowrank

        common = dict(epochs=epochs, seconds=seconds, temperature=temperature, alpha=alpha,
                      patience=patience, batch_size=batch_size, learning_rate=learning_rate,
                      holdout=holdout, trial_epochs=trial_epochs, recalibrate=recalibrate,
                      seed=seed, progress=progress, unsafe=unsafe, output_kind=output_kind,
                      max_mae_increase=max_mae_increase)
        finish = dict(int8=int8, int8_max_drop=int8_max_drop, qat_epochs=qat_epochs, batch=batch)
        if method == "lowrank":
            return lowrank(model, x, y, target_macs=target_macs,
                           max_accuracy_drop=max_accuracy_drop, **common, **finish)
        return after_channels(prune, model, x, y, target_macs=target_macs,
                              max_accuracy_drop=max_accuracy_drop, common=common, finish=finish,
                              channels=dict(criterion=criterion, n_trials=n_trials,
                                            channel_multiple=channel_multiple))
    if (target_macs is None) == (max_accuracy_drop is None):
        raise PruneError("give exactly one of target_macs and max_accuracy_drop")
    if target_macs is not None and not 0.0 < target_macs < 1.0:
        raise PruneError(f"target_macs must be in (0, 1), got {target_macs}")
    if max_accuracy_drop is not None and not 0.0 <= max_accuracy_drop < 100.0:
        raise PruneError(f"max_accuracy_drop must be in [0, 100) points, got {max_accuracy_drop}")
    if criterion not in C.CRITERIA:
        raise PruneError(f"unknown criterion {criterion!r}; choose one of {', '.join(C.CRITERIA)}")
    if channel_multiple < 1:
        raise PruneError(f"channel_multiple must be >= 1, got {channel_multiple}")
    if (storage is None) != (study is None):
        raise PruneError("a shared search needs both storage and study")
    if storage is not None and max_accuracy_drop is None:
        raise PruneError("a shared study is a search: give max_accuracy_drop, not target_macs")
    if worker and resume:
        raise PruneError("worker joins a running study and resume restarts a stopped one; "
                         "give one of them")
    model_arg = model
    model = _load(model, unsafe)
    scoring = Scoring.for_model(model, y, output_kind, max_mae_increase)
    config = D.DistillConfig(temperature=temperature, alpha=alpha, epochs=epochs,
                             seconds=seconds, patience=patience, batch_size=batch_size,
                             learning_rate=learning_rate, seed=seed, progress=progress,
                             scoring=scoring)
    config.check()
    x, y = check_data(model, x, y, scoring)
    train, val = split(len(x), holdout, seed)
    graph = G.ChannelGraph(model)
    if not graph.prunable_groups:
        raise PruneError("nothing to prune: every channel group is frozen ("
                         + "; ".join(graph.describe()) + ")")
    teacher = graph.model
    x_train, x_val = x[train], x[val]
    y_train, y_val = (None, None) if y is None else (y[train], y[val])
    scores = C.scores(graph, criterion, x_train)
    reference = D.predict(teacher, x_val)
    before = D.score(teacher, x_val, y_val, reference, scoring=scoring)
    search_info = {}
    if target_macs is not None:
        plan = plan_for_macs(graph, scores, target_macs, channel_multiple)
        pruned = R.rebuild(plan)
        if recalibrate:
            D.refresh_batch_norms(pruned, x_train, x_val, y_val, reference, seed=seed,
                                  scoring=scoring)
    else:
        from leangraph.prune import search as S

        shared, settings, fingerprints = None, None, None
        if storage is not None:
            from leangraph.prune import shared as P

            settings = {"max_accuracy_drop": float(max_accuracy_drop), "n_trials": int(n_trials),
                        "output_kind": scoring.kind,
                        "max_mae_increase": float(scoring.max_mae_increase),
                        "trial_epochs": int(trial_epochs), "channel_multiple": int(channel_multiple),
                        "criterion": criterion, "seed": int(seed), "holdout": float(holdout),
                        "recalibrate": bool(recalibrate), "temperature": float(temperature),
                        "alpha": float(alpha), "batch_size": int(batch_size),
                        "learning_rate": float(learning_rate)}
            from leangraph.search.storage import data_fingerprint

            fingerprints = {"model": P.model_fingerprint(teacher), "data": data_fingerprint(x, y)}
            mode = "worker" if worker else ("resume" if resume else "create")
            shared = P.PruneStudy(storage, study, mode=mode, wait=wait, heartbeat=heartbeat)
        try:
            found = S.search(graph, scores, teacher, x_train, x_val, y_train, y_val,
                             baseline=before, max_accuracy_drop=max_accuracy_drop,
                             n_trials=n_trials, trial_epochs=trial_epochs, config=config,
                             multiple=channel_multiple, seed=seed, recalibrate=recalibrate,
                             progress=_print_trial if progress else None, shared=shared,
                             settings=settings, fingerprints=fingerprints)
        finally:
            if shared is not None:
                shared.close()
        plan, pruned, search_info = found.plan, found.model, found.summary()
        if shared is not None:
            from leangraph.search.storage import masked

            search_info["shared"] = {"storage": masked(storage), "study": study,
                                     "workers": sorted({r["worker"] for r in found.records
                                                        if r.get("worker")})}
    unfinetuned = D.score(pruned, x_val, y_val, reference, scoring=scoring)
    result = D.distill(pruned, teacher, x_train, x_val, y_train, y_val, config)
    after = D.score(pruned, x_val, y_val, reference, scoring=scoring)
    int8_info = {}
    if int8:
        int8_info = int8_ready(pruned, teacher, x_train, x_val, y_train, y_val, reference,
                               config, max_drop=int8_max_drop, qat_epochs=qat_epochs)
        after = D.score(pruned, x_val, y_val, reference, scoring=scoring)
    report = PruneReport(
        model=model.name, criterion=criterion, target_macs=target_macs,
        max_accuracy_drop=max_accuracy_drop, macs_before=graph.macs(), macs_after=plan.macs(),
        params_before=_count_params(teacher), params_after=_count_params(pruned),
        accuracy_before=before, accuracy_after=after, accuracy_unfinetuned=unfinetuned,
        labels=y is not None, metric=scoring.name, n_train=len(train), n_held_out=len(val),
        prunable_share=graph.prunable_share(), groups=group_rows(graph, plan),
        unsupported=[list(u) for u in graph.unsupported], distill=asdict(result),
        search=search_info, int8=int8_info, seconds=time.monotonic() - started,
        source=str(Path(model_arg).resolve()) if isinstance(model_arg, (str, os.PathLike)) else None)
    return pruned, report
