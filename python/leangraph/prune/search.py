"""Per-group keep ratios searched for the lowest measured latency within an accuracy budget.

Optuna's TPE proposes how many channels each group keeps (whole multiples of
`multiple`, which CPU kernels favour); each candidate is rebuilt, fine-tuned
briefly by distillation, scored on the held-out data and timed as a frozen
`deploy` graph on leangraph's C++ timer. The accuracy budget is a constraint
(Optuna's trial constraints), so a candidate that breaks it can never be the result;
the latency is the objective because MACs and latency disagree.
"""

import os
import warnings
from dataclasses import asdict, dataclass, field, fields

import numpy as np

from leangraph.bench import benchmark
from leangraph.errors import PruneError
from leangraph.freeze import freeze
from leangraph.prune import distill as D
from leangraph.prune import rebuild as R
from leangraph.prune.scoring import Scoring, drop
from leangraph.prune.shared import encode_keep, worker_name
from leangraph.recipes import recipe
from leangraph.transform import transform


@dataclass
class Trial:
    number: int
    keep: dict  # group index -> channels kept
    macs_ratio: float
    latency_ms: float
    accuracy: float  # the held-out score (prune.scoring: larger is better)
    accuracy_drop: float  # points (or % MAE, or dB: prune.scoring.drop)
    feasible: bool


_FIELDS = [f.name for f in fields(Trial)]


@dataclass
class SearchResult:
    plan: object
    model: object
    best: Trial
    baseline_latency_ms: float
    max_accuracy_drop: float
    trials: list = field(default_factory=list)
    records: list = field(default_factory=list)  # a shared study's trials, with their workers
    scoring: object = None

    def summary(self):
        scoring = self.scoring
        unit = drop(scoring.name, 1.0, 1.0)[1] if scoring else "points"
        budget = scoring.budget_words(self.max_accuracy_drop) if scoring else (
            f"{self.max_accuracy_drop:g} points")
        text = (f"{len(self.trials)} trials; best #{self.best.number}: "
                f"{self.best.latency_ms:.3f} ms vs {self.baseline_latency_ms:.3f} ms unpruned "
                f"({self.baseline_latency_ms / self.best.latency_ms:.2f}x), MACs "
                f"{self.best.macs_ratio:.3f}x, held-out drop {self.best.accuracy_drop:+.2f} "
                f"{unit} after the trial fine-tune (budget {budget})")
        trials = self.records or [asdict(t) for t in self.trials]
        return {"summary": text, "baseline_latency_ms": self.baseline_latency_ms,
                "best": asdict(self.best), "trials": trials,
                "metric": scoring.name if scoring else "accuracy"}


def deploy_graph(model, batch):
    """The model frozen at `batch` and rewritten with leangraph's `deploy` recipe."""
    frozen = freeze(model, batch_size=batch)
    graph_def = transform(frozen.graph_def, recipe("deploy", frozen.graph_def),
                          inputs=frozen.input_names, outputs=frozen.output_names)
    return graph_def, frozen.input_names[0], frozen.output_names


def latency_ms(model, x, batch=1, runs=30):
    """Median latency of the frozen deploy graph of `model` on one batch of `x`."""
    graph_def, name, outputs = deploy_graph(model, batch)
    feed = np.resize(x, (batch,) + x.shape[1:]).astype(np.float32)
    result = benchmark(graph_def, {name: feed}, outputs=outputs, runs=runs, warmup=5,
                       measure_overhead=False)
    return float(result.p50_ms)


def _steps(group, multiple):
    step = multiple if group.channels >= 2 * multiple else 1
    return step, max(1, group.channels // step)


def search(graph, scores, teacher, x_train, x_val, y_train, y_val, *, baseline,
           max_accuracy_drop, n_trials=12, trial_epochs=1, config=None, multiple=8, seed=0,
           batch=1, runs=30, progress=None, recalibrate=True, shared=None, settings=None,
           fingerprints=None):
    """Returns a SearchResult whose candidate stays within `max_accuracy_drop` points.

    shared: a leangraph.prune.shared.PruneStudy; the search is then one worker of
    that study (settings and fingerprints say what it searches), `n_trials`
    counts COMPLETE trials study-wide, and the result is the study's best.
    """
    import optuna

    if n_trials < 1:
        raise PruneError(f"the search needs at least one trial, got {n_trials}")
    config = config or D.DistillConfig()
    scoring = config.scoring or Scoring.for_model(teacher, y_val)
    short = D.DistillConfig(**{**asdict(config), "epochs": trial_epochs, "seconds": None,
                               "progress": False, "scoring": scoring})
    soft_val = D.predict(teacher, x_val)
    groups = graph.prunable_groups
    timer = shared.timed(latency_ms) if shared is not None else latency_ms
    modern_constraints = hasattr(optuna.trial.Trial, "set_constraint")
    baseline_latency = timer(teacher, x_val, batch, runs)
    trials, built, records = [], {}, []

    def candidate(keep):
        plan = R.plan_from_scores(graph, scores, keep)
        model = R.rebuild(plan)
        if recalibrate:
            D.refresh_batch_norms(model, x_train, x_val, y_val, soft_val, seed=seed,
                                  scoring=scoring)
        D.distill(model, teacher, x_train, x_val, y_train, y_val, short)
        return plan, model

    def objective(trial):
        if shared is not None:
            trial.set_user_attr("run", {"worker": worker_name(), "phase": "running"})
        keep = {}
        for g in groups:
            step, count = _steps(g, multiple)
            keep[g.index] = min(g.channels, step * trial.suggest_int(f"g{g.index}", 1, count))
        plan, model = candidate(keep)
        accuracy = D.score(model, x_val, y_val, soft_val, scoring=scoring)
        lost = drop(scoring.name, baseline, accuracy)[0]
        latency = timer(model, x_val, batch, runs)
        excess = scoring.excess(baseline, accuracy, max_accuracy_drop)
        trial.set_user_attr("constraint", excess)
        if modern_constraints:
            trial.set_constraint("accuracy_budget", excess)
        record = Trial(trial.number, keep, plan.macs() / graph.macs(), latency, accuracy, lost,
                       scoring.within(baseline, accuracy, max_accuracy_drop))
        if shared is not None:
            trial.set_user_attr("result", {**asdict(record), "keep": encode_keep(keep)})
        trials.append(record)
        built[trial.number] = (plan, model)
        if progress:
            progress(record)
        return latency

    # Workers with one seed would all sample the same sequence.
    if shared is not None and shared.mode != "create":
        seed_here = seed + 1 + os.getpid() % 100003
    else:
        seed_here = seed
    # Optuna 5 reads constraints a trial sets itself (constraints_func is deprecated there).
    constraints = ({} if modern_constraints else
                   {"constraints_func": lambda t: [t.user_attrs.get("constraint", float("inf"))]})
    sampler = optuna.samplers.TPESampler(seed=seed_here, constant_liar=shared is not None,
                                         **constraints)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # Uniform cuts first: TPE starts from points that are usually feasible.
    uniform = [{f"g{g.index}": max(1, round(share * _steps(g, multiple)[1])) for g in groups}
               for share in (0.75, 0.5)]
    if shared is None:
        study = optuna.create_study(direction="minimize", sampler=sampler)
        for params in uniform:
            study.enqueue_trial(params)
        study.optimize(objective, n_trials=n_trials)
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study = shared.attach(sampler, settings=settings, fingerprints=fingerprints,
                                  enqueue=uniform)
            done = optuna.study.MaxTrialsCallback(
                n_trials, states=(optuna.trial.TrialState.COMPLETE,))
            if len(shared.records()) < n_trials:
                study.optimize(objective, callbacks=[done])
        records = shared.records()
        trials = [Trial(**{k: r[k] for k in _FIELDS}) for r in records]
    feasible = [t for t in trials if t.feasible]
    if not feasible:
        # Nothing within budget: the unpruned model is the only honest answer.
        plan = R.Plan(graph, frozenset())
        model = R.rebuild(plan)
        best = Trial(-1, {g.index: g.channels for g in groups}, 1.0, baseline_latency,
                     baseline, 0.0, True)
        return SearchResult(plan, model, best, baseline_latency, max_accuracy_drop, trials,
                            records, scoring)
    best = min(feasible, key=lambda t: t.latency_ms)
    # Another worker's candidate is rebuilt from its keep counts.
    plan, model = built[best.number] if best.number in built else candidate(best.keep)
    return SearchResult(plan, model, best, baseline_latency, max_accuracy_drop, trials, records,
                        scoring)


def plot_trials(search_info, path):
    """Every trial: latency against held-out accuracy and against MACs, budget marked."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    trials = search_info["trials"]
    best = search_info["best"]
    metric = search_info.get("metric", "accuracy")

    def score(t):
        if metric == "MAE":
            return -t["accuracy"]
        return t["accuracy"] if metric.startswith("SQNR") else 100 * t["accuracy"]

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for feasible, colour, label in ((True, "tab:blue", "within budget"),
                                    (False, "tab:red", "over budget")):
        chosen = [t for t in trials if t["feasible"] == feasible]
        if not chosen:
            continue
        latency = [t["latency_ms"] for t in chosen]
        left.scatter(latency, [score(t) for t in chosen], c=colour, label=label)
        right.scatter(latency, [t["macs_ratio"] for t in chosen], c=colour, label=label)
    for ax in (left, right):
        ax.axvline(search_info["baseline_latency_ms"], color="grey", ls=":", label="unpruned")
        ax.set_xlabel("p50 latency of the frozen deploy graph (ms)")
    left.scatter([best["latency_ms"]], [score(best)], marker="*", s=160, c="k",
                 label="chosen")
    unit = {"MAE": ""}.get(metric, " (dB)" if metric.startswith("SQNR") else " (%)")
    left.set_ylabel(f"held-out {metric} after the trial fine-tune{unit}")
    right.set_ylabel("MACs (share of the original)")
    left.legend(fontsize="small")
    fig.suptitle("leangraph prune: search trials")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
