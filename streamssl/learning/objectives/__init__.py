"""Self-supervised objectives, one module each with its formula and paper (CPC_audio's criterion side)."""

from streamssl.learning.objectives.apc import APC, apc_loss
from streamssl.learning.objectives.cpc import CPC, cpc_loss
from streamssl.learning.objectives.decorrelation import decorrelation_loss
from streamssl.learning.objectives.moco import MoCo, moco_loss
from streamssl.wire import stream_hash

# The one list of objective names: config weights are ``<name>_weight``, metrics label ``objective=<name>``.
OBJECTIVES = ("apc", "cpc", "moco", "decorrelation")

__all__ = ["APC", "CPC", "MoCo", "OBJECTIVES", "apc_loss", "cpc_loss", "decorrelation_loss", "moco_loss", "stream_hash"]
