"""Low-rank factorisation of Keras 3 models: fewer MACs where the CPU turns them into time.

`decompose` holds one decomposition per layer kind (SVD for Dense and 1x1
convs, Tucker-2 for k x k convs, EVBMF and energy rank candidates), `apply`
builds the factorised model, `ranks` keeps only what the C++ timer measures as
faster, and `api.lowrank` drives them with prune's distillation.
"""

from leangraph.prune.lowrank.api import lowrank
from leangraph.prune.lowrank.apply import Factorable

__all__ = ["Factorable", "lowrank"]
