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
- :func:`conv_kernels`: on the CPU, a network with a 1x1 convolution of fewer than 8 channels
  per group (a ResNet of width 4 or 6) trains on PyTorch's own convolutions, not oneDNN's.
  oneDNN's AVX2 1x1 backward-weights kernel (torch 2.13, channels-last) hung in 4 of 6 short
  runs of ``resnet`` width 4 and 6 on a 2-core AVX2 machine and once aborted with "double free
  or corruption"; widths 8-32 ran clean, and PyTorch's kernels ran every width clean (about
  2x slower per step, on networks this small a few ms).
"""

from __future__ import annotations

import contextlib

import torch

from .errors import UserError

__all__ = ["resolve_device", "prepare", "amp_dtype", "autocast", "compiled", "conv_kernels"]


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


# oneDNN's 1x1 convolution kernels are unsafe below one AVX2 vector (8 floats) of channels
_MIN_ONEDNN_CHANNELS = 8


def conv_kernels(model: torch.nn.Module, device: str | torch.device):
    """A context for running ``model`` on ``device``: PyTorch's own convolution kernels on the
    CPU when ``model`` has a 1x1 convolution with fewer than 8 channels per group (see the
    module docstring), otherwise a no-op context."""
    if torch.device(device).type != "cpu":
        return contextlib.nullcontext()
    small = any(isinstance(m, torch.nn.Conv2d) and m.kernel_size == (1, 1)
                and min(m.in_channels, m.out_channels) // m.groups < _MIN_ONEDNN_CHANNELS
                for m in model.modules())
    return _without_onednn() if small else contextlib.nullcontext()


@contextlib.contextmanager
def _without_onednn():
    """oneDNN off for the duration, every other backend flag (TF32, determinism) untouched."""
    before = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = False
    try:
        yield
    finally:
        torch.backends.mkldnn.enabled = before
