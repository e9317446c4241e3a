"""The torch models of the architecture families described in :mod:`bayes_prune.families`."""

from __future__ import annotations

import torch
from torch import nn

from .errors import UserError
from .families import CNN_KERNEL, check, cnn_stages
from .tasks import task_info

__all__ = ["build_model", "prunable", "count_params"]


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
    kinds = (nn.Linear, nn.Conv1d, nn.Conv2d)
    return [(f"{name}.weight", m.weight) for name, m in model.named_modules()
            if isinstance(m, kinds)]


def count_params(model: nn.Module) -> tuple[int, int]:
    """``(total, prunable)`` parameter counts of ``model``."""
    return (sum(p.numel() for p in model.parameters()),
            sum(p.numel() for _, p in prunable(model)))
