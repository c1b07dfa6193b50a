"""Structured channel pruning of Keras 3 functional models.

`groups` finds which channels must go together, `criteria` scores them,
`rebuild` makes the smaller model, `distill` fine-tunes it from the original,
`search` looks for per-group ratios under an accuracy budget, and `api.prune`
drives them. `lowrank` factorises layers instead (prune's method="lowrank"),
with the same distillation and output.
"""

from leangraph.prune.api import PruneReport, prune
from leangraph.prune.groups import ChannelGraph, Group
from leangraph.prune.rebuild import Plan, plan_from_scores

# `rebuild` stays the module's name here (leangraph.prune.rebuild.rebuild is the function).
__all__ = ["ChannelGraph", "Group", "Plan", "plan_from_scores", "prune", "PruneReport"]
