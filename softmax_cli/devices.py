"""Which torch device a run uses: --device auto|cpu|cuda|cuda:N|mps, checked against this machine."""

from __future__ import annotations

import torch


def resolve_device(name: str) -> torch.device:
    """auto: cuda if available, then mps, then cpu. Raises ValueError naming what is missing."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"{name}: CUDA is not available on this machine (try --device cpu)")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"{name}: no such GPU; this machine has {torch.cuda.device_count()} (cuda:0..)")
    elif device.type == "mps":
        if not torch.backends.mps.is_available():
            raise ValueError(f"{name}: MPS is not available on this machine (try --device cpu)")
    elif device.type != "cpu":
        raise ValueError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps")
    return device
