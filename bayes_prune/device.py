"""Where and how fast a training step runs: the device, its number formats, compilation.

One code path for every device. What differs on a GPU is switched on here and nowhere else:

- ``precision``: the recipe's ``precision`` ("auto" = bfloat16 autocast on a CUDA device that
  has it, float32 elsewhere). The CPU has a bfloat16 autocast too, which runs the same code,
  so tests exercise the GPU's mixed-precision path on the CPU (slowly: most CPUs lack bf16
  units). Master weights, optimizer state, masks and BatchNorm statistics stay float32.
- :func:`prepare`: TF32 matmuls and convolutions, and cuDNN's autotuner (every step has the
  same shapes), on CUDA only; a process-wide setting, as every run of a process trains the same
  way. Channels-last is the models' layout already (:func:`bayes_prune.nets.build_model`).
- :func:`compiled`: ``torch.compile`` of the forward (and, through AOTAutograd, backward)
  pass when the recipe asks for it.
"""

from __future__ import annotations

import contextlib

import torch

from .errors import UserError

__all__ = ["resolve_device", "prepare", "amp_dtype", "autocast", "compiled"]


def resolve_device(device: str = "auto") -> str:
    """``auto`` -> ``cuda`` when a GPU is visible, else ``cpu``."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda was asked for but no CUDA device is visible; "
                        "use --device auto or cpu")
    return device


def prepare(device: str | torch.device) -> None:
    """Process-wide speed settings for ``device``: TF32 and the cuDNN autotuner on CUDA."""
    if torch.device(device).type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True  # float32 matmuls on tensor cores
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True  # fixed shapes: the fastest kernel once found


def amp_dtype(precision: str, device: str | torch.device) -> torch.dtype | None:
    """The autocast dtype of a recipe's ``precision`` on ``device``; None = plain float32.

    ``auto`` is bfloat16 on a CUDA device that supports it (Ampere and later) and float32
    elsewhere, so CPU grids keep their float32 numbers; ``bf16`` asks for it on any device."""
    kind = torch.device(device).type
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if precision == "auto":
        return torch.bfloat16 if kind == "cuda" and torch.cuda.is_bf16_supported() else None
    raise UserError(f"recipe.precision = {precision!r} must be 'auto', 'fp32' or 'bf16'")


def autocast(dtype: torch.dtype | None, device: str | torch.device):
    """A context that runs matmuls and convolutions in ``dtype`` (None: a no-op context)."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype)


def compiled(model, compile: bool):
    """``torch.compile(model)`` when ``compile``, else ``model`` itself.

    Compiling the same model again (each IMP round calls this) reuses the compiled graph:
    dynamo's cache is keyed on the module's code and guarded on its identity."""
    return torch.compile(model) if compile else model
