"""Self-supervised objectives, one module each with its formula and paper (CPC_audio's criterion side)."""

from streamssl.objectives.apc import APC, apc_loss
from streamssl.objectives.cpc import CPC, cpc_loss
from streamssl.objectives.moco import MoCo, moco_loss, stream_hash

__all__ = ["APC", "CPC", "MoCo", "apc_loss", "cpc_loss", "moco_loss", "stream_hash"]
