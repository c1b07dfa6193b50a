"""`leangraph.prune(method="lowrank")`: factorise where it pays, fine-tune, report."""

import time
from dataclasses import asdict

from leangraph.errors import PruneError
from leangraph.prune import distill as D
from leangraph.prune.data import check_data, split
from leangraph.prune.groups import ChannelGraph
from leangraph.prune.int8 import CALIBRATION, int8_ready
from leangraph.prune.loading import count_params, load
from leangraph.prune.lowrank import ranks as K
from leangraph.prune.lowrank.apply import Factorable
from leangraph.prune.lowrank.decompose import ENERGIES
from leangraph.prune.lowrank.report import LowRankReport
from leangraph.prune.scoring import drop


def _print_layer(name, row):
    t = row["timing"]
    share = row["macs_after"] / row["macs_before"]
    print(f"{name:24s} rank {str(row['rank']):10s} MACs {share:.3f}x"
          f"  {t['speedup']:.3f}x faster (95 % CI {t['low']:.3f}-{t['high']:.3f})  "
          f"{'pays' if row['pays'] else 'does not pay'}", flush=True)


def _print_level(trial):
    s = trial["timing"]
    print(f"level {trial['level']:12s} {trial['layers']} layers  {s['speedup']:.3f}x faster  "
          f"held-out drop {trial['accuracy_drop']:+.2f} points  "
          f"{'ok' if trial['feasible'] else 'over'}", flush=True)


def _macs(model):
    return ChannelGraph(model).macs()


def _search(factorable, configs, teacher, data, judge, config, *, baseline, budget,
            trial_epochs, recalibrate, seed, progress, min_speedup):
    """Every level briefly fine-tuned, scored and timed; the fastest within the budget wins."""
    from dataclasses import replace

    x_train, x_val, y_train, y_val, reference = data
    scoring = config.scoring
    short = replace(config, epochs=trial_epochs, seconds=None, progress=False)
    trials, best = [], None
    for label, chosen in configs:
        model = factorable.rebuild({n: r["rank"] for n, r in chosen.items()})
        if recalibrate:
            D.refresh_batch_norms(model, x_train, x_val, y_val, reference, seed=seed,
                                  scoring=scoring)
        D.distill(model, teacher, x_train, x_val, y_train, y_val, short)
        accuracy = D.score(model, x_val, y_val, reference, scoring=scoring)
        timing = judge.time(model)
        trial = {"level": label, "layers": len(chosen), "accuracy": accuracy,
                 "accuracy_drop": drop(scoring.name, baseline, accuracy)[0],
                 "timing": asdict(timing),
                 "feasible": (scoring.within(baseline, accuracy, budget)
                              and timing.pays(min_speedup))}
        trials.append(trial)
        if progress:
            _print_level(trial)
        if trial["feasible"] and (best is None or timing.speedup > best[0]["timing"]["speedup"]):
            best = (trial, chosen, model)
    return trials, best


def lowrank(model, x, y=None, *, target_macs=None, max_accuracy_drop=None, ranks=None,
            teacher=None, batch=1, energies=ENERGIES, rank_multiple=8, min_speedup=1.0,
            epochs=10, seconds=None, temperature=4.0, alpha=0.7, patience=3, batch_size=32,
            learning_rate=1e-3, holdout=0.15, trial_epochs=1, recalibrate=True, seed=0,
            progress=True, unsafe=False, timer=None, int8=False, int8_max_drop=0.5,
            qat_epochs=3, error_samples=64, output_kind=None, max_mae_increase=0.1):
    """Factorises a Keras model's Dense and Conv2D layers; returns (model, LowRankReport).

    Each Dense or 1x1 conv is a candidate for a truncated SVD, each k x k conv
    for Tucker-2, at the ranks that keep `energies` of its spectrum or that
    EVBMF estimates, rounded up to `rank_multiple`. A candidate is kept only
    when the whole model's frozen deploy graph at `batch`, with that layer
    swapped, is measurably faster (ranks.paying_ranks; with `int8`, both graphs
    as leangraph.quantize writes them; `timer` replaces the C++ timer, for tests). Then, as for channel pruning, exactly one goal:
    `max_accuracy_drop` (points; every energy level is fine-tuned briefly,
    scored held out and timed, and the fastest within the budget is kept, or
    none), `target_macs` (the highest energy level within that share of the
    MACs) or `ranks` ({layer: rank}, no search: ranks are checked, not timed).
    The result is fine-tuned by distillation from `teacher` (default: `model`),
    whose held-out score and MACs the report compares against.
    """
    started = time.monotonic()
    goals = sum(g is not None for g in (target_macs, max_accuracy_drop, ranks))
    if goals != 1:
        raise PruneError("give exactly one of target_macs, max_accuracy_drop and ranks")
    if target_macs is not None and not 0.0 < target_macs < 1.0:
        raise PruneError(f"target_macs must be in (0, 1), got {target_macs}")
    if max_accuracy_drop is not None and not 0.0 <= max_accuracy_drop < 100.0:
        raise PruneError(f"max_accuracy_drop must be in [0, 100) points, got {max_accuracy_drop}")
    if ranks is not None and not isinstance(ranks, dict):
        raise PruneError(f"ranks must map layer names to ranks, got {type(ranks).__name__}")
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise PruneError(f"batch must be a whole number >= 1, got {batch!r}")
    if rank_multiple < 1:
        raise PruneError(f"rank_multiple must be >= 1, got {rank_multiple}")
    if not energies or not all(0.0 < e <= 1.0 for e in energies):
        raise PruneError(f"energies must be shares in (0, 1], got {list(energies)}")
    model = load(model, unsafe)
    teacher = model if teacher is None else load(teacher, unsafe)
    config = D.DistillConfig.for_model(
        teacher, y, output_kind, max_mae_increase, temperature=temperature, alpha=alpha,
        epochs=epochs, seconds=seconds, patience=patience, batch_size=batch_size,
        learning_rate=learning_rate, seed=seed, progress=progress)
    scoring = config.scoring
    x, y = check_data(model, x, y, scoring)
    train, val = split(len(x), holdout, seed)
    factorable = Factorable(model)
    if not factorable.sites:
        whole = "; ".join(f"{n} ({why})" for n, _, why in factorable.unsupported) or "none"
        raise PruneError(f"nothing to factorise: model '{model.name}' has no Dense or Conv2D "
                         f"layer (left whole: {whole})")
    x_train, x_val = x[train], x[val]
    y_train, y_val = (None, None) if y is None else (y[train], y[val])
    reference = D.predict(teacher, x_val)
    before = D.score(teacher, x_val, y_val, reference, scoring=scoring)
    macs_teacher, macs_model = _macs(teacher), _macs(model)
    inputs = factorable.layer_inputs(x_train, error_samples)

    def error(name, rank):
        return factorable.reconstruction_error(name, rank, inputs[name])

    # With int8 the target, ranks are judged by what they save in the int8 graph.
    calibration = x_train[:CALIBRATION] if int8 else None
    layer_judge = K.Judge(model, x_val, batch, timer, calibration)
    final_judge = (layer_judge if teacher is model else
                   K.Judge(teacher, x_val, batch, timer, calibration))
    timed, search_info, why_whole = {}, {}, {}
    if ranks is not None:
        chosen = factorable.check(ranks)
        student = factorable.rebuild(chosen)
    else:
        candidates = {}
        for name, site in factorable.sites.items():
            found = site.decomposition.candidates(energies, rank_multiple, *site.calls[0])
            if found:
                candidates[name] = found
            else:
                why_whole[name] = "no candidate rank does fewer MACs"
        timed = K.paying_ranks(factorable, candidates, layer_judge, min_speedup=min_speedup,
                               errors=error, progress=_print_layer if progress else None)
        configs = K.levels(timed, energies)
        for name, rows in timed.items():
            if not any(r["pays"] for r in rows):
                why_whole[name] = "not measurably faster at any candidate rank"
        chosen, student = {}, None
        if target_macs is not None:
            def left(c):
                return macs_model - factorable.macs_saved({n: r["rank"] for n, r in c.items()})

            reach = [(label, c) for label, c in configs if left(c) <= target_macs * macs_teacher]
            if not reach:
                least = min((left(c) for _, c in configs), default=macs_model)
                raise PruneError(f"target_macs {target_macs:g} is out of reach: the "
                                 f"factorisations that pay on this CPU leave "
                                 f"{least / macs_teacher:.3f} of the MACs")
            # The level that cuts least while reaching the target keeps most of the spectrum.
            label, picked = max(reach, key=lambda lc: left(lc[1]))
            chosen = {n: r["rank"] for n, r in picked.items()}
            search_info = {"summary": f"level {label}: {len(chosen)} layers factorised"}
        else:
            trials, best = _search(factorable, configs, teacher,
                                   (x_train, x_val, y_train, y_val, reference), layer_judge,
                                   config, baseline=before, budget=max_accuracy_drop,
                                   trial_epochs=trial_epochs, recalibrate=recalibrate,
                                   seed=seed, progress=progress, min_speedup=min_speedup)
            if best is not None:
                trial, picked, student = best
                chosen = {n: r["rank"] for n, r in picked.items()}
                summary = (f"{len(trials)} levels; chose {trial['level']} "
                           f"({trial['timing']['speedup']:.2f}x, drop "
                           f"{trial['accuracy_drop']:+.2f} points after the trial fine-tune)")
            else:
                summary = (f"{len(trials)} levels; none both measurably faster and within "
                           f"{scoring.budget_words(max_accuracy_drop)}: the model is left "
                           "whole")
            search_info = {"summary": summary, "levels": trials}
        if student is None:
            student = factorable.rebuild(chosen)
            if recalibrate and chosen:
                D.refresh_batch_norms(student, x_train, x_val, y_val, reference, seed=seed,
                                      scoring=scoring)
    unfinetuned = D.score(student, x_val, y_val, reference, scoring=scoring)
    result = D.distill(student, teacher, x_train, x_val, y_train, y_val, config)
    after = D.score(student, x_val, y_val, reference, scoring=scoring)
    int8_info = {}
    if int8:
        int8_info = int8_ready(student, teacher, x_train, x_val, y_train, y_val, reference,
                                 config, max_drop=int8_max_drop, qat_epochs=qat_epochs)
        after = D.score(student, x_val, y_val, reference, scoring=scoring)
    speed = asdict(final_judge.time(student)) if chosen or teacher is not model else {}
    rows = _layer_rows(factorable, chosen, timed, why_whole, error)
    report = LowRankReport(
        model=model.name, method="lowrank", target_macs=target_macs,
        max_accuracy_drop=max_accuracy_drop, batch=batch, timed_as=layer_judge.precision,
        macs_before=macs_teacher,
        macs_after=macs_model - factorable.macs_saved(chosen),
        params_before=count_params(teacher), params_after=count_params(student),
        accuracy_before=before, accuracy_after=after, accuracy_unfinetuned=unfinetuned,
        labels=y is not None, metric=scoring.name, n_train=len(train), n_held_out=len(val),
        layers=rows,
        unsupported=[list(u) for u in factorable.unsupported], search=search_info,
        speed=speed, distill=asdict(result), int8=int8_info,
        seconds=time.monotonic() - started)
    return student, report


def _plain(rank):
    return list(rank) if isinstance(rank, tuple) else rank


def _layer_rows(factorable, chosen, timed, why_whole, error):
    rows = []
    for name, site in factorable.sites.items():
        d = site.decomposition
        rank = chosen.get(name)
        row = {"name": name, "kind": d.kind, "shape": d.describe(),
               "full_rank": _plain(d.full_rank()), "rank": _plain(rank),
               "kept": rank is not None, "macs_before": site.macs(),
               "macs_after": site.macs(rank), "timing": None,
               "reconstruction_error": None if rank is None else error(name, rank),
               "why_whole": None if rank is not None else
               why_whole.get(name, "left whole at the chosen level"),
               "timed": [{**r, "rank": _plain(r["rank"])} for r in timed.get(name, [])]}
        for r in timed.get(name, []):
            if rank is not None and r["rank"] == rank:
                row["timing"] = r["timing"]
        rows.append(row)
    return rows


def after_channels(prune, model, x, y, *, target_macs=None, max_accuracy_drop=None, common,
                   finish, channels):
    """Channel pruning (`prune`, method "channels"), then low-rank factorisation of its result,
    both fine-tuned from the original. The goal is split: channels get half the accuracy
    budget or the square root of the MACs share; low-rank then works to the whole goal,
    measured against the original."""
    import math

    if (target_macs is None) == (max_accuracy_drop is None):
        raise PruneError("give exactly one of target_macs and max_accuracy_drop")
    if target_macs is not None and not 0.0 < target_macs < 1.0:
        raise PruneError(f"target_macs must be in (0, 1), got {target_macs}")
    original = load(model, common.get("unsafe", False))
    pruned, channel_report = prune(
        original, x, y, method="channels",
        target_macs=None if target_macs is None else math.sqrt(target_macs),
        max_accuracy_drop=None if max_accuracy_drop is None else max_accuracy_drop / 2,
        **common, **channels)
    student, report = lowrank(pruned, x, y, teacher=original, target_macs=target_macs,
                              max_accuracy_drop=max_accuracy_drop, **common, **finish)
    report.method = "both"
    report.channels = channel_report.to_dict()
    report.seconds += channel_report.seconds
    return student, report
