"""The torch models of the architecture families described in :mod:`bayes_prune.families`."""

from __future__ import annotations

import copy

import torch
from torch import nn

from .errors import UserError
from .families import CNN_KERNEL, check, cnn_stages
from .tasks import task_info

__all__ = ["build_model", "prunable", "count_params", "widen", "GroupLinear"]


def _mlp(d_in: int, depth: int, width: int, n_out: int) -> nn.Module:
    layers: list[nn.Module] = [nn.Flatten()]
    for i in range(depth):
        layers += [nn.Linear(d_in if i == 0 else width, width), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(width, n_out))


def _cnn(shape: tuple[int, ...], depth: int, width: int, n_out: int) -> nn.Module:
    dims = len(shape) - 1
    conv, pool = (nn.Conv1d, nn.MaxPool1d) if dims == 1 else (nn.Conv2d, nn.MaxPool2d)
    k = CNN_KERNEL[dims]
    layers: list[nn.Module] = []
    pools, positions = cnn_stages(shape, depth)
    for i, pooled in enumerate(pools):
        layers += [conv(shape[0] if i == 0 else width, width, k, padding=k // 2), nn.ReLU()]
        if pooled:
            layers.append(pool(2))
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(width * positions, n_out))


class _Block(nn.Module):
    def __init__(self, ch_in: int, ch: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(ch_in, ch, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(ch)
        self.conv2 = nn.Conv2d(ch, ch, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(ch)
        self.shortcut = nn.Sequential()
        if ch_in != ch or stride != 1:
            self.shortcut = nn.Sequential(nn.Conv2d(ch_in, ch, 1, stride, bias=False),
                                          nn.BatchNorm2d(ch))

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


def _resnet(c_in: int, depth: int, width: int, n_out: int) -> nn.Module:
    blocks = (depth - 2) // 6
    layers: list[nn.Module] = [nn.Conv2d(c_in, width, 3, 1, 1, bias=False),
                               nn.BatchNorm2d(width), nn.ReLU()]
    ch_in = width
    for stage in range(3):
        ch = width * 2**stage
        for b in range(blocks):
            layers.append(_Block(ch_in, ch, 2 if stage > 0 and b == 0 else 1))
            ch_in = ch
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(ch_in, n_out))


def build_model(arch: str, task: str, depth: int, width: int) -> nn.Module:
    """The dense ``arch`` network for ``task``, initialised from torch's current RNG state.

    Networks with 2-D convolutions come in the channels-last memory format: on the CPU their
    convolutions and max-pools run 1.6-2x faster that way (Fashion-MNIST CNNs, one thread), and
    the values are the same up to float rounding. Inputs can stay in the default layout."""
    check(arch, depth, width)
    info = task_info(task)
    if arch == "mlp":
        return _mlp(int(torch.tensor(info.input_shape).prod()), depth, width, info.n_classes)
    if arch == "cnn":
        model = _cnn(info.input_shape, depth, width, info.n_classes)
    elif len(info.input_shape) != 3:
        raise UserError(f"resnet needs image inputs; task {task!r} has shape {info.input_shape}")
    else:
        model = _resnet(info.input_shape[0], depth, width, info.n_classes)
    return model.to(memory_format=torch.channels_last) if len(info.input_shape) == 3 else model


def prunable(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """``(name, weight)`` of every Linear and Conv layer: what IMP prunes. Biases and norm
    layers are never in it."""
    kinds = (nn.Linear, nn.Conv1d, nn.Conv2d, GroupLinear)
    return [(f"{name}.weight", m.weight) for name, m in model.named_modules()
            if isinstance(m, kinds)]


def count_params(model: nn.Module) -> tuple[int, int]:
    """``(total, prunable)`` parameter counts of ``model``."""
    return (sum(p.numel() for p in model.parameters()),
            sum(p.numel() for _, p in prunable(model)))


# ----------------------------------------------------------- K networks side by side

class GroupLinear(nn.Module):
    """K Linear layers applied member by member: ``(B, K, in)`` -> ``(B, K, out)``; weights
    ``(K, out, in)``, biases ``(K, out)``."""

    def __init__(self, members: int, d_in: int, d_out: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(members, d_out, d_in))
        self.bias = nn.Parameter(torch.empty(members, d_out))

    def forward(self, x):
        return torch.einsum("bki,koi->bko", x, self.weight) + self.bias


class _GroupFlatten(nn.Module):
    """``(B, K * C, ...)`` -> ``(B, K, C * ...)``: each member's maps flattened as its solo
    model's ``nn.Flatten`` does (channel-major)."""

    def __init__(self, members: int):
        super().__init__()
        self.members = members

    def forward(self, x):
        return x.reshape(x.shape[0], self.members, -1)


def widen(model: nn.Module, members: int) -> nn.Module:
    """A CNN or ResNet of :func:`build_model` as ``members`` networks side by side in one.

    Every convolution gets ``members`` times its channels in ``members`` groups, and every
    BatchNorm ``members`` times its channels: BatchNorm, ReLU, pooling and the residual sum act
    channel by channel, so member k is channels ``[k C, (k + 1) C)`` of every layer and sees
    only its own inputs, statistics included. The read-out is a :class:`GroupLinear`. Input
    ``(B, members * C_in, H, W)`` -> logits ``(B, members, classes)``. The parameters are
    uninitialised: load the members' weights (:class:`bayes_prune.batched.Grouped`)."""
    def wide(m: nn.Module) -> nn.Module:
        if isinstance(m, (nn.Conv1d, nn.Conv2d)):
            return type(m)(m.in_channels * members, m.out_channels * members, m.kernel_size,
                           m.stride, m.padding, groups=m.groups * members,
                           bias=m.bias is not None)
        if isinstance(m, nn.BatchNorm2d):
            return nn.BatchNorm2d(m.num_features * members, m.eps, m.momentum)
        if isinstance(m, nn.Linear):
            return GroupLinear(members, m.in_features, m.out_features)
        if isinstance(m, nn.Flatten):
            return _GroupFlatten(members)
        if isinstance(m, (nn.Sequential, _Block)):
            for name, child in m.named_children():
                setattr(m, name, wide(child))
            return m
        if isinstance(m, (nn.ReLU, nn.MaxPool1d, nn.MaxPool2d, nn.AdaptiveAvgPool2d)):
            return m
        raise TypeError(f"no side-by-side form for {type(m).__name__}")

    out = wide(copy.deepcopy(model))
    is_2d = any(isinstance(m, nn.Conv2d) for m in out.modules())
    return out.to(memory_format=torch.channels_last) if is_2d else out
