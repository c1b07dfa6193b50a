"""`leangraph.prune`: remove channels, fine-tune by distillation, report what it cost."""

import math
import os
import time
from dataclasses import asdict
from pathlib import Path

from leangraph.errors import PruneError
from leangraph.prune import criteria as C
from leangraph.prune import distill as D
from leangraph.prune import groups as G
from leangraph.prune import rebuild as R
from leangraph.prune import search as S
from leangraph.prune import shared as P
from leangraph.prune.data import check_data, split
from leangraph.prune.int8 import int8_ready
from leangraph.prune.loading import count_params, load
from leangraph.prune.lowrank.api import after_channels, lowrank
from leangraph.prune.report import PruneReport, group_rows
from leangraph.search.storage import data_fingerprint, masked


__all__ = ["PruneReport", "check_data", "int8_ready", "prune", "split"]


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


def _print_trial(t):
    mark = "ok  " if t.feasible else "over"
    print(f"trial {t.number:2d} {mark} latency {t.latency_ms:8.3f} ms  MACs {t.macs_ratio:.3f}x  "
          f"held-out drop {t.accuracy_drop:+.2f} points", flush=True)


def prune(model, x, y=None, *, target_macs=None, max_accuracy_drop=None, criterion="l2",
          epochs=10, seconds=None, temperature=4.0, alpha=0.7, patience=3, batch_size=32,
          learning_rate=1e-3, holdout=0.15, channel_multiple=8, n_trials=12, trial_epochs=1,
          recalibrate=True, seed=0, progress=True, unsafe=False, storage=None, study=None,
          worker=False, resume=False, wait=60.0, heartbeat=10, int8=False, int8_max_drop=0.5,
          qat_epochs=3, method="channels", batch=1, output_kind=None, max_mae_increase=0.1,
          energies=None):
    """Prunes a Keras model's channels; returns (pruned Keras model, PruneReport).

    method: "channels" (this), "lowrank" (factorise Dense and Conv2D layers where
    the timer says it pays at `batch`: leangraph.prune.lowrank.lowrank, which
    returns a LowRankReport) or "both" (channels first, then low-rank, each
    given half the accuracy budget or the square root of the MACs share).
    energies: the low-rank candidate levels (shares of each layer's spectral
    energy; None: leangraph.prune.lowrank.decompose.ENERGIES).

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
    if method == "channels" and energies is not None:
        raise PruneError("energies are the low-rank levels: they need method 'lowrank' or 'both'")
    if method != "channels":
        if storage is not None or worker or resume:
            raise PruneError("a shared study is the channel search's; it needs method 'channels'")
        common = dict(epochs=epochs, seconds=seconds, temperature=temperature, alpha=alpha,
                      patience=patience, batch_size=batch_size, learning_rate=learning_rate,
                      holdout=holdout, trial_epochs=trial_epochs, recalibrate=recalibrate,
                      seed=seed, progress=progress, unsafe=unsafe, output_kind=output_kind,
                      max_mae_increase=max_mae_increase)
        finish = dict(int8=int8, int8_max_drop=int8_max_drop, qat_epochs=qat_epochs, batch=batch)
        if energies is not None:
            finish["energies"] = tuple(energies)
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
    model = load(model, unsafe)
    config = D.DistillConfig.for_model(
        model, y, output_kind, max_mae_increase, temperature=temperature, alpha=alpha,
        epochs=epochs, seconds=seconds, patience=patience, batch_size=batch_size,
        learning_rate=learning_rate, seed=seed, progress=progress)
    scoring = config.scoring
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
        shared, settings, fingerprints = None, None, None
        if storage is not None:
            settings = {"max_accuracy_drop": float(max_accuracy_drop), "n_trials": int(n_trials),
                        "output_kind": scoring.kind,
                        "max_mae_increase": float(scoring.max_mae_increase),
                        "trial_epochs": int(trial_epochs), "channel_multiple": int(channel_multiple),
                        "criterion": criterion, "seed": int(seed), "holdout": float(holdout),
                        "recalibrate": bool(recalibrate), "temperature": float(temperature),
                        "alpha": float(alpha), "batch_size": int(batch_size),
                        "learning_rate": float(learning_rate)}
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
        params_before=count_params(teacher), params_after=count_params(pruned),
        accuracy_before=before, accuracy_after=after, accuracy_unfinetuned=unfinetuned,
        labels=y is not None, metric=scoring.name, n_train=len(train), n_held_out=len(val),
        prunable_share=graph.prunable_share(), groups=group_rows(graph, plan),
        unsupported=[list(u) for u in graph.unsupported], distill=asdict(result),
        search=search_info, int8=int8_info, seconds=time.monotonic() - started,
        source=str(Path(model_arg).resolve()) if isinstance(model_arg, (str, os.PathLike)) else None)
    return pruned, report
