"""Where the learner runs: CUDA when available (bf16 autocast, cuDNN autotune), else CPU fp32.

bf16 on this project's CPUs is ~100x slower than fp32 (ARCHITECTURE.md, "Design decisions"), so autocast is a CUDA-only thing.
"""

from __future__ import annotations

import contextlib

import torch

from streamssl.config import ConfigError


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' | 'cpu' | 'cuda' (or 'cuda:N') -> a torch.device; sets CUDA backend flags once."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"device {name!r}: torch sees no CUDA device; use auto or cpu")
        # Window shapes repeat, so autotuning pays off; TF32 is plenty for SSL gradients.
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    return torch.device(name)


def to_device(array, device: torch.device) -> torch.Tensor:
    """A host array on ``device``. For CUDA it goes through page-locked memory and is copied
    asynchronously (``non_blocking``), so the step's kernels queue behind the copy instead of
    the host waiting for it; on CPU it is the array itself, no copy."""
    t = torch.as_tensor(array)
    if device.type == "cuda":
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device)


def autocast(device: torch.device):
    """bf16 autocast on CUDA, nothing (fp32) on CPU."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()
