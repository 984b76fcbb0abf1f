"""Where the learner runs: CUDA when there is one, the CPU otherwise.

On CUDA the forward passes run under bf16 autocast (tensor cores; fp32 master weights)
and cuDNN picks its fastest kernels. On the CPU everything stays fp32: bf16 matmuls on
the CI machine's CPU are ~100x slower than fp32 (DESIGN.md).
"""

from __future__ import annotations

import contextlib

import torch

from streamssl.config import ConfigError


def resolve_device(name: str) -> torch.device:
    """``auto`` | ``cpu`` | ``cuda`` -> a torch.device; asking for CUDA without one is a config error."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError("learner.device = 'cuda': no CUDA device is available; use auto or cpu")
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    return torch.device(name)


def autocast(device: torch.device):
    """bf16 autocast on CUDA, a no-op elsewhere."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()
