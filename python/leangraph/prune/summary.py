"""What every `leangraph prune` report (channels or low rank) computes the same way."""

import json
from dataclasses import asdict, dataclass

from leangraph.prune.scoring import drop, shown


@dataclass
class ReductionSummary:
    """What a prune report (channels or low rank) holds before its own fields: MACs and
    parameters before and after (for low rank with `both`, before any pruning), the held-out
    scores (larger is better: prune.scoring) and what they measure."""

    macs_before: int  # the original's
    macs_after: int
    params_before: int
    params_after: int
    accuracy_before: float  # held-out score (accuracy, agreement, -MAE or SQNR dB: `metric`)
    accuracy_after: float
    accuracy_unfinetuned: float
    labels: bool
    metric: str  # what the scores measure (prune.scoring.Scoring.name)
    n_train: int
    n_held_out: int

    @property
    def macs_ratio(self):
        return self.macs_after / self.macs_before if self.macs_before else 1.0

    @property
    def accuracy_drop(self):
        """What was lost on the held-out data: points of accuracy or agreement, per cent
        of MAE, or dB of SQNR (prune.scoring.drop; drop_unit says which)."""
        return drop(self.metric, self.accuracy_before, self.accuracy_after)[0]

    @property
    def drop_unit(self):
        return drop(self.metric, self.accuracy_before, self.accuracy_after)[1]

    def score_rows(self):
        """(what is scored, before, after, change) in words, for report.md."""
        return (f"held-out {self.metric}", shown(self.metric, self.accuracy_before),
                shown(self.metric, self.accuracy_after),
                f"{-self.accuracy_drop:+.2f} {self.drop_unit}")

    def to_dict(self):
        data = asdict(self)
        data["macs_ratio"] = self.macs_ratio
        data["accuracy_drop"] = self.accuracy_drop
        data["drop_unit"] = self.drop_unit
        return data

    def to_json(self):
        return json.dumps(self.to_dict(), indent=2, default=float)
