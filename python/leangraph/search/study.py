"""Reading a shared study back: `leangraph study show` and `--export`.

show() prints where the study was made, how its trials ended (complete, failed,
retried, idle), every trial with its worker, the Pareto table and the best
trial. export() rebuilds the best trial's graph from the model the study
recorded, checks it is that model (sha256) and, where the data is at hand,
that it scores what the trial recorded; then it writes best.pb, report.json and
report.md into OUTDIR in one rename.
"""

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from leangraph import graphs
from leangraph.errors import OutputError
from leangraph.metrics import Gates
from leangraph.pipeline import precisions
from leangraph.pipeline.scoring import Judge, read_examples, split_examples
from leangraph.recipes import recipe_for
from leangraph.search.shared import finished_trials, result_of, trial_phase
from leangraph.search.storage import (
    StorageError,
    close_storage,
    data_fingerprint,
    graph_fingerprint,
    masked,
    open_storage,
)
from leangraph.search.trials import ORIGINAL, shown_score
from leangraph.transform import transform


@contextlib.contextmanager
def opened(url, name):
    """The study `name` in `url`, its connections handed back on leaving."""
    import optuna

    storage = open_storage(url)
    try:
        try:
            study = optuna.load_study(study_name=name, storage=storage)
        except KeyError:
            names = sorted(s.study_name for s in optuna.get_all_study_summaries(storage))
            raise StorageError(f"no study '{name}' in {masked(url)} (it has: "
                               f"{', '.join(names) or 'none'})") from None
        if "settings" not in study.user_attrs:
            raise StorageError(f"study '{name}' was not made by leangraph tune")
        yield study
    finally:
        close_storage(storage)


def _states(study):
    counts = {}
    for frozen in study.get_trials(deepcopy=False):
        counts[frozen.state.name] = counts.get(frozen.state.name, 0) + 1
    return counts


def trial_rows(study):
    """One dict per trial the study holds: what it measured, where, and how it ended."""
    rows = []
    for frozen in study.get_trials(deepcopy=False):
        measured = frozen.user_attrs.get("result") or {}
        run = frozen.user_attrs.get("run") or {}
        rows.append({
            "number": frozen.number,
            "state": frozen.state.name,
            "params": dict(frozen.params),
            "phase": trial_phase(frozen),
            "latency_ms": measured.get("latency_ms"),
            "accuracy": measured.get("accuracy"),
            "accuracy_drop": measured.get("accuracy_drop"),
            "metric": measured.get("metric"),
            "score": measured.get("score"),
            "higher_is_better": measured.get("higher_is_better", True),
            "feasible": measured.get("feasible"),
            "error": measured.get("error"),
            "repeat_of": measured.get("repeat_of"),
            "retry_of": frozen.system_attrs.get("failed_trial"),
            "host": run.get("host"),
            "worker": run.get("worker"),
            "timed": measured.get("timed"),
        })
    return rows


def summary(study):
    """A JSON-ready account of the study."""
    result = result_of(study)
    attrs = study.user_attrs
    return {
        "study": study.study_name,
        "environment": attrs.get("environment"),
        "settings": attrs.get("settings"),
        "fingerprints": attrs.get("fingerprints"),
        "sources": attrs.get("sources"),
        "states": _states(study),
        "best": vars(result.best),
        "baseline": vars(result.baseline),
        "pareto": [t.number for t in result.pareto()],
        "trials": trial_rows(study),
    }


def show(url, name):
    """The text `leangraph study show` prints."""
    with opened(url, name) as study:
        return _show(study, url, name)


def _show(study, url, name):
    attrs = study.user_attrs
    env = attrs.get("environment", {})
    result = result_of(study)
    rows = trial_rows(study)
    states = _states(study)
    lines = [f"study '{name}' in {masked(url)}",
             f"made on {env.get('host')}: {env.get('cpu')} [{' '.join(env.get('isa', []))}], "
             f"tensorflow {env.get('tensorflow')}, leangraph {env.get('leangraph')}",
             f"model sha256 {attrs['fingerprints']['model'][:16]}, data sha256 "
             f"{attrs['fingerprints']['data'][:16]}"]
    idle = sum(1 for r in rows if r["phase"] == "idle")
    retried = [r for r in rows if r["retry_of"] is not None]
    state_text = ", ".join(f"{n} {s}" for s, n in sorted(states.items()))
    lines.append(f"trials: {state_text}" + (f" ({idle} idle waits)" if idle else "")
                 + ("; retries: " + ", ".join(f"{r['number']} of {r['retry_of']}"
                                               for r in retried) if retried else ""))
    workers = {}
    for r in rows:
        if r["phase"] == "done" and r["state"] == "COMPLETE":
            workers[r["worker"]] = workers.get(r["worker"], 0) + 1
    lines.append("workers: " + ", ".join(f"{w} ({n})" for w, n in sorted(workers.items())))
    lines.append("")
    header = ("#", "configuration", "state", "p50 ms", "score", "worker", "note")
    table = [header]
    for r in rows:
        if r["phase"] == "idle":
            continue
        p = r["params"]
        label = (f"{p.get('model')}/{p.get('recipe')}/{p.get('precision')}/t{p.get('threads')}"
                 if p else "-")
        note = []
        if r["repeat_of"] is not None:
            note.append(f"repeat of {r['repeat_of']}")
        if r["retry_of"] is not None:
            note.append(f"retry of {r['retry_of']}")
        if r["error"]:
            note.append(r["error"][:70])
        table.append((str(r["number"]), label, r["state"],
                      f"{r['latency_ms']:.3f}" if r["latency_ms"] is not None else "-",
                      shown_score(r["metric"], r["score"]),
                      r["worker"] or "-", "; ".join(note)))
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in table]
    lines += ["", "Pareto front:", result.table(), _best_line(result)]
    return "\n".join(lines)


def _best_line(result):
    return f"best: trial {result.best.number} {result.best_line()}"


def _rebuild(study, model=None, data=None):
    """(graph, config, verification) of the best trial, from the recorded sources."""
    attrs = study.user_attrs
    settings, sources = attrs["settings"], attrs.get("sources", {})
    best = result_of(study).best
    if best.model != ORIGINAL:
        raise StorageError(f"the best trial uses candidate model '{best.model}', which the "
                           "study does not record; rebuild it with leangraph.tune")
    model = model or sources.get("model")
    if not model:
        raise StorageError("the study records no model path; give --model")
    base = graphs.load_graph(model)
    if graph_fingerprint({ORIGINAL: base}) != attrs["fingerprints"]["model"]:
        raise StorageError(f"{model} is not the model study '{study.study_name}' was made "
                           "from (sha256 differs)")
    graph = base
    if best.recipe != "none":
        graph = transform(graph, recipe_for(best.recipe, graph),
                          inputs=settings["inputs"], outputs=settings["outputs"])
    choice = precisions.choose(best.precision)
    verification = {"model_sha256": attrs["fingerprints"]["model"], "accuracy_checked": False}
    data = data or sources.get("data")
    examples = None
    if data and Path(data).exists():
        inputs, out_infos, examples = read_examples(base, data, None, settings["inputs"],
                                                    settings["outputs"], what="--data",
                                                    limit=sources.get("limit") or None)
        if data_fingerprint(examples.arrays, examples.labels) != attrs["fingerprints"]["data"]:
            verification["note"] = f"{data} is not the study's data; accuracy not re-checked"
            examples = None
    else:
        verification["note"] = "the study's data is not at hand; accuracy not re-checked"
    if examples is None:
        if choice.precision.calibrated:
            raise StorageError(f"the best trial is {best.precision}, which calibrates on the "
                               "study's data: give --data (the file the study was run on)")
        graph, config, _ = choice.build(graph, (settings["inputs"], settings["outputs"]))
        return graph, config, verification
    held, calib, _ = split_examples(examples, None, None, lambda line: None)  # as tune split
    graph, config, _ = choice.build(graph, (inputs, [o.name for o in out_infos]),
                                    calib.arrays)
    gates = Gates.for_graph(base, out_infos, kinds=settings.get("output_kinds"))
    gates.read_labels(examples.labels)
    judge = Judge(base, held, inputs, out_infos, gates)
    scored = judge(graph, config, lossy=choice.lossy)
    if not _same_score(scored.value, best.score, scored.is_fraction):
        raise StorageError(f"the rebuilt best graph scores {scored.value:.6g} "
                           f"({scored.metric}), but trial {best.number} recorded "
                           f"{best.score:.6g}")
    verification.update(accuracy_checked=True, metric=scored.metric, score=scored.value)
    if scored.is_fraction:
        verification["accuracy"] = scored.value
    return graph, config, verification


def _same_score(value, recorded, fraction):
    """A re-measured score equals the recorded one: exactly for a fraction of examples,
    within float round-off (1e-3 relative) for an SQNR or MAE."""
    if recorded is None:
        return False
    if fraction:
        return abs(value - recorded) <= 1e-9
    return abs(value - recorded) <= 1e-3 * max(1.0, abs(recorded))


def export(url, name, outdir, *, model=None, data=None):
    """Writes OUTDIR/best.pb, report.json, report.md for the study's best trial."""
    with opened(url, name) as study:
        graph, config, verification = _rebuild(study, model, data)
        report = summary(study)
        result = result_of(study)
    report["storage"] = masked(url)
    report["verification"] = verification
    report["session_config_needed"] = config is not None
    markdown = [f"# leangraph study '{name}'", "", f"storage: {masked(url)}", "",
                _best_line(result), "", "```", result.table(), "```", "",
                f"verification: {json.dumps(verification)}", ""]
    outdir = Path(outdir).resolve()
    if outdir.exists() and not outdir.is_dir():
        raise OutputError(f"{outdir} exists and is not a folder")
    try:
        outdir.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{outdir.name}.", suffix=".tmp",
                                        dir=outdir.parent))
    except OSError as exc:
        raise OutputError(f"cannot write {outdir}: {exc.strerror or exc}") from None
    names = ("best.pb", "report.json", "report.md")
    try:
        graphs.save_graph(graph, staging / "best.pb")
        graphs.atomic_write(staging / "report.json", json.dumps(report, indent=2).encode())
        graphs.atomic_write(staging / "report.md", "\n".join(markdown).encode())
        if not outdir.exists():
            os.chmod(staging, 0o777 & ~_umask())
            os.rename(staging, outdir)  # a new folder appears whole
        else:
            for item in names:
                os.replace(staging / item, outdir / item)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return outdir


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


__all__ = ["export", "finished_trials", "opened", "show", "summary", "trial_rows"]
