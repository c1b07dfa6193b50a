"""What `leangraph prune` (channels) did, as report.md and report.json."""

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from leangraph.errors import OutputError
from leangraph.prune.scoring import shown
from leangraph.prune.search import plot_trials
from leangraph.prune.summary import ReductionSummary


@dataclass
class PruneReport(ReductionSummary):
    model: str
    criterion: str
    target_macs: float | None
    max_accuracy_drop: float | None
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


def group_rows(graph, plan):
    rows = []
    for g in graph.groups:
        rows.append({"index": g.index, "producers": list(g.producers), "channels": g.size,
                     "removable": g.channels, "prunable": g.prunable,
                     "kept": g.size - (g.channels - plan.kept(g)) if plan else g.size,
                     "frozen": list(g.frozen)})
    return rows


#: What `leangraph prune` writes into its output folder (pareto.png too after a search).
OUTPUTS = ("pruned.keras", "report.json", "report.md")


def write_outputs(model, report, out):
    """Writes the three files into `out` so that either all of them land or none does."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise OutputError(f"output {out} exists and is not a folder")
    parent = out.resolve().parent
    if not parent.is_dir():
        raise OutputError(f"folder {parent} does not exist")
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.staging-", dir=parent))
    try:
        model.save(staging / "pruned.keras")
        (staging / "report.json").write_text(report.to_json())
        (staging / "report.md").write_text(report.to_markdown())
        names = list(OUTPUTS)
        if report.search.get("trials"):
            plot_trials(report.search, staging / "pareto.png")
            names.append("pareto.png")
        if not out.exists():
            os.replace(staging, out)
            return [out / name for name in names]
        for name in names:
            os.replace(staging / name, out / name)
        return [out / name for name in names]
    except OSError as exc:
        raise OutputError(f"cannot write {out}: {exc}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
