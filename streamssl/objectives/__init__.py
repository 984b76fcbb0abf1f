"""The self-supervised objectives, one module each, formula and source in each docstring."""

from streamssl.objectives.apc import APC, apc_loss
from streamssl.objectives.cpc import CPC, cpc_loss
from streamssl.objectives.moco import MoCo, moco_loss

__all__ = ["APC", "CPC", "MoCo", "apc_loss", "cpc_loss", "moco_loss"]
