"""Global magnitude pruning, by its properties."""

import pytest
import torch

from bayes_prune.prune import apply_masks, density, magnitude_prune


def _weights(seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(30, 20, generator=g), torch.randn(10, 30, generator=g),
            torch.randn(5, 3, 3, generator=g)]


def test_prunes_the_fraction_of_survivors_globally():
    w = _weights()
    masks = [torch.ones_like(x) for x in w]
    new = magnitude_prune(w, masks, 0.2)
    total = sum(x.numel() for x in w)
    assert abs(density(new) - 0.8) <= 1 / total
    kept = torch.cat([x[m.bool()].abs() for x, m in zip(w, new, strict=True)])
    cut = torch.cat([x[~m.bool()].abs() for x, m in zip(w, new, strict=True)])
    assert cut.max() <= kept.min()


def test_compound_density_and_never_unprunes():
    w = _weights(1)
    masks = [torch.ones_like(x) for x in w]
    total = sum(x.numel() for x in w)
    for r in range(1, 16):
        new = magnitude_prune(w, masks, 0.2)
        assert all(bool((n <= m).all()) for n, m in zip(new, masks, strict=True))
        # each round rounds to a whole weight: the error stays within r weights
        assert abs(density(new) - 0.8**r) <= r / total
        masks = new
        w = [torch.randn_like(x) for x in w]  # retraining changes magnitudes


def test_inputs_untouched_and_masks_checked():
    w = _weights()
    masks = [torch.ones_like(x) for x in w]
    magnitude_prune(w, masks, 0.5)
    assert all(bool((m == 1).all()) for m in masks)
    with pytest.raises(ValueError, match="other than 0 and 1"):
        magnitude_prune(w, [m * 0.5 for m in masks], 0.2)
    with pytest.raises(ValueError, match="fraction"):
        magnitude_prune(w, masks, 1.0)


def test_ties_are_broken_deterministically():
    w = [torch.ones(10), torch.ones(10)]
    masks = [torch.ones(10), torch.ones(10)]
    a = magnitude_prune(w, masks, 0.3)
    b = magnitude_prune(w, masks, 0.3)
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert a[0][:6].sum() == 0 and a[1].sum() == 10


def test_apply_masks_matches_the_per_layer_loop():
    from bayes_prune.nets import build_model, prunable

    torch.manual_seed(0)
    model = build_model("resnet", "cifar10", 8, 4)
    weights = [w for _, w in prunable(model)]
    masks = magnitude_prune(weights, [torch.ones_like(w) for w in weights], 0.5)
    expected = [w.detach() * m for w, m in zip(weights, masks, strict=True)]
    apply_masks(weights, masks)
    for w, e in zip(weights, expected, strict=True):
        assert torch.equal(w.detach(), e)
    assert all(w.requires_grad for w in weights)
