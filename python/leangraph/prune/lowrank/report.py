"""What `leangraph prune --method lowrank` did: per layer, and for the whole model."""

from dataclasses import dataclass, field

from leangraph.prune.scoring import shown
from leangraph.prune.summary import ReductionSummary


@dataclass
class LowRankReport(ReductionSummary):
    model: str
    method: str  # "lowrank", or "both" (channels pruned first; see `channels`)
    target_macs: float | None
    max_accuracy_drop: float | None
    batch: int  # the batch the latencies were measured at
    timed_as: str = "fp32"  # the graphs timed: "fp32" (deploy) or "int8" (leangraph.quantize)
    layers: list = field(default_factory=list)  # one row per factorisable layer
    unsupported: list = field(default_factory=list)  # [name, class, why it is left whole]
    search: dict = field(default_factory=dict)  # the energy levels tried
    speed: dict = field(default_factory=dict)  # result against original, timed in pairs
    distill: dict = field(default_factory=dict)
    int8: dict = field(default_factory=dict)
    channels: dict = field(default_factory=dict)  # the channel-pruning report, with `both`
    seconds: float = 0.0
    source: str | None = None
    kind: str = "leangraph prune"

    def to_markdown(self):
        what = self.metric
        title = "low-rank factorisation" + (" after channel pruning" if self.channels else "")
        lines = [f"# leangraph prune ({title}): {self.model}", "",
                 f"Held-out {what} on {self.n_held_out} examples ({self.n_train} used for "
                 f"fine-tuning); latencies of the frozen `deploy` graph"
                 f"{' as leangraph.quantize writes it in int8' if self.timed_as == 'int8' else ''}"
                 f" at batch {self.batch}, timed in interleaved pairs on this machine.", "",
                 "| | before | after | ratio |", "| --- | --- | --- | --- |",
                 f"| MACs per example | {self.macs_before:,} | {self.macs_after:,} | "
                 f"{self.macs_ratio:.3f} |",
                 f"| parameters | {self.params_before:,} | {self.params_after:,} | "
                 f"{self.params_after / max(1, self.params_before):.3f} |",
                 "| " + " | ".join(self.score_rows()) + " |"]
        if self.speed:
            s = self.speed
            lines.append(f"| latency (ms, p50) | {s['before_ms']:.4f} | {s['after_ms']:.4f} | "
                         f"{s['speedup']:.2f}x faster (95 % CI {s['low']:.2f}-{s['high']:.2f}) |")
        lines += ["", f"Without fine-tuning: {shown(self.metric, self.accuracy_unfinetuned)}. "
                      f"Distillation: {self.distill.get('epochs', 0):.1f} epochs "
                      f"({self.distill.get('stopped', '')}).", "",
                  "| layer | kind | shape | rank | kept | MACs before | MACs after | "
                  "ms before | ms after | rel. error |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        for row in self.layers:
            t = row.get("timing") or {}
            err = row.get("reconstruction_error")
            rank = row["rank"] if row["kept"] else "-"
            lines.append(
                f"| {row['name']} | {row['kind']} | {row['shape']} | {rank} | "
                f"{'yes' if row['kept'] else 'no: ' + str(row.get('why_whole'))} | "
                f"{row['macs_before']:,} | "
                f"{row['macs_after']:,} | {_ms(t.get('before_ms'))} | {_ms(t.get('after_ms'))} | "
                f"{'' if err is None else f'{err:.3f}'} |")
        if self.unsupported:
            lines += ["", "Left whole (no factorisation for their kind):", ""]
            lines += [f"- `{name}` ({cls}): {why}" for name, cls, why in self.unsupported]
        if self.search.get("summary"):
            lines += ["", f"Search: {self.search['summary']}"]
        if self.int8:
            q = self.int8
            lines += ["", f"int8 (post-training, held out): {shown(self.metric, q['post_training'])} "
                          f"against float {shown(self.metric, q['float'])}; {q['decision']}"]
        return "\n".join(lines) + "\n"


def _ms(value):
    return "" if value is None else f"{value:.4f}"
