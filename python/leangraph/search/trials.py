"""A search's trials and its result: what `leangraph tune` measured, in the one form
the tune driver, a shared study's workers and `leangraph study` read and write.
"""

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from leangraph import graphs

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


def partial_result(trials, budget, messages):
    return {
        "max_accuracy_drop": budget,
        "messages": list(messages),
        "trials": [asdict(t) for t in trials],
        "complete": False,
    }
