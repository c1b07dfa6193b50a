"""What every `leangraph prune` report (channels or low rank) computes the same way."""

import json
from dataclasses import asdict


class ReductionSummary:
    """For a dataclass with macs_before/macs_after and accuracy_before/accuracy_after."""

    @property
    def macs_ratio(self):
        return self.macs_after / self.macs_before if self.macs_before else 1.0

    @property
    def accuracy_drop(self):
        """Percentage points lost on the held-out data."""
        return 100.0 * (self.accuracy_before - self.accuracy_after)

    def to_dict(self):
        data = asdict(self)
        data["macs_ratio"] = self.macs_ratio
        data["accuracy_drop"] = self.accuracy_drop
        return data

    def to_json(self):
        return json.dumps(self.to_dict(), indent=2, default=float)
