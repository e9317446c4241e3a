"""Architecture families: torch models agree with the torch-free weight counts."""

import pytest
import torch

from bayes_prune import families, nets
from bayes_prune.errors import UserError
from bayes_prune.tasks import task_info


@pytest.mark.parametrize("arch, task, depth, width", [
    ("mlp", "mnist1d", 1, 16), ("mlp", "fashion-mnist", 3, 64), ("mlp", "digits", 2, 8),
    ("cnn", "mnist1d", 3, 16), ("cnn", "fashion-mnist", 2, 8), ("cnn", "cifar10", 4, 8),
    ("resnet", "cifar10", 8, 16), ("resnet", "fashion-mnist", 14, 8),
])
def test_counts_and_shapes(arch, task, depth, width):
    torch.manual_seed(0)
    model = nets.build_model(arch, task, depth, width)
    assert nets.count_params(model) == families.param_counts(arch, task, depth, width)
    x = torch.zeros(2, *task_info(task).input_shape)
    assert model(x).shape == (2, 10)


def test_prunable_never_holds_biases_or_norms():
    model = nets.build_model("resnet", "cifar10", 8, 4)
    names = [n for n, _ in nets.prunable(model)]
    assert names and all(n.endswith(".weight") for n in names)
    norm_params = {id(p) for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)
                   for p in m.parameters()}
    assert not norm_params & {id(p) for _, p in nets.prunable(model)}
    assert all(p.dim() > 1 for _, p in nets.prunable(model))


def test_bad_architectures_are_named():
    with pytest.raises(UserError, match="unknown arch 'vgg'; known architectures: mlp, cnn"):
        families.param_counts("vgg", "mnist1d", 2, 16)
    with pytest.raises(UserError, match="6k\\+2"):
        families.param_counts("resnet", "cifar10", 10, 16)
    with pytest.raises(UserError, match="width must be a positive integer"):
        families.param_counts("mlp", "mnist1d", 2, 0)
    with pytest.raises(UserError, match="unknown task"):
        families.param_counts("mlp", "imagenet", 2, 16)
