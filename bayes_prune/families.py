"""Architecture families and their weight counts, without torch.

A family has a depth and a width knob; :func:`param_counts` gives the dense network's total and
prunable weight counts in closed form (tests pin them to the torch models of
:mod:`bayes_prune.nets`), so the query path can size a configuration nobody trained.

- ``mlp``: ``depth`` hidden Linear layers of ``width`` units (ReLU), then a Linear head.
- ``cnn``: ``depth`` convolutions of ``width`` channels (kernel 5 for 1-D inputs, 3x3 for
  images; ReLU; max-pool by 2 while the map is at least 4 wide), then a Linear head on the
  flattened maps (so the net knows where a feature was; a global average pool left 1-layer
  MNIST-1D CNNs near random guessing).
- ``resnet``: the CIFAR ResNet of He et al. (2016) used by Rosenfeld et al.: ``depth = 6k+2``,
  a 3x3 stem of ``width`` channels and three stages of ``k`` basic blocks with ``width``,
  ``2 width`` and ``4 width`` channels (1x1 projection shortcuts where the shape changes),
  BatchNorm after every convolution, global average pool, Linear head. ``width`` 16 is the
  paper's ResNet-20/56 base; width scales 2x, 4x are 32, 64.

Prunable weights are the Linear and Conv weights (the head included); biases and BatchNorm
parameters are never pruned.
"""

from __future__ import annotations

from math import prod

from .errors import UserError
from .tasks import task_info

FAMILIES = ("mlp", "cnn", "resnet")
CNN_KERNEL = {1: 5, 2: 3}  # kernel side by number of spatial dimensions


def check(arch: str, depth: int, width: int) -> None:
    """Raise :class:`UserError` unless ``arch`` is a family and (depth, width) fit it."""
    if arch not in FAMILIES:
        raise UserError(f"unknown arch {arch!r}; known architectures: {', '.join(FAMILIES)}")
    if int(width) <= 0:
        raise UserError(f"width must be a positive integer, got {width!r}")
    if int(depth) <= 0:
        raise UserError(f"depth must be a positive integer, got {depth!r}")
    if arch == "resnet" and (depth - 2) % 6:
        raise UserError(f"resnet depth must be 6k+2 (8, 14, 20, 32, 56, ...), got {depth}")


def cnn_stages(shape: tuple[int, ...], depth: int) -> tuple[list[bool], int]:
    """The CNN family's layout on inputs of ``shape``: for each of the ``depth`` conv stages
    whether it max-pools by 2 (while the smallest spatial side is at least 4, which keeps maps
    at least 2 wide), and the spatial positions left for the read-out, a linear layer on the
    flattened maps (so the network keeps where a feature was seen)."""
    sides, pools = list(shape[1:]), []
    for _ in range(depth):
        pools.append(min(sides) >= 4)
        if pools[-1]:
            sides = [s // 2 for s in sides]
    return pools, prod(sides)


def param_counts(arch: str, task: str, depth: int, width: int) -> tuple[int, int]:
    """``(params_total, params_prunable)`` of the dense ``arch`` network on ``task``."""
    check(arch, depth, width)
    info = task_info(task)
    c, n_out, w = info.input_shape[0], info.n_classes, int(width)
    if arch == "mlp":
        d_in = prod(info.input_shape)
        weights = d_in * w + (depth - 1) * w * w + w * n_out
        return weights + depth * w + n_out, weights
    if arch == "cnn":
        k = CNN_KERNEL[len(info.input_shape) - 1] ** (len(info.input_shape) - 1)
        readout = cnn_stages(info.input_shape, depth)[1] * w * n_out
        weights = c * w * k + (depth - 1) * w * w * k + readout
        return weights + depth * w + n_out, weights
    blocks = (depth - 2) // 6
    weights, norm = 9 * c * w, 2 * w  # stem conv + BN
    ch_in = w
    for stage in range(3):
        ch = w * 2**stage
        for _ in range(blocks):
            weights += 9 * ch_in * ch + 9 * ch * ch
            norm += 4 * ch
            if ch_in != ch:  # projection shortcut
                weights += ch_in * ch
                norm += 2 * ch
            ch_in = ch
    weights += ch_in * n_out
    return weights + norm + n_out, weights
