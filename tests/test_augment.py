"""On-device minibatches and crop + flip augmentation (bayes_prune.augment)."""

import pytest
import torch

from bayes_prune.augment import CHUNK, PAD, Minibatches, check, crop_flip
from bayes_prune.errors import UserError


def _images(b=5, c=3, h=32, w=32):
    """Synthetic CIFAR-10-format batch: uint8 32x32x3 images, as floats (B, C, H, W)."""
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (b, h, w, c), dtype=torch.uint8, generator=g).permute(
        0, 3, 1, 2).float()


def test_crop_flip_shapes_and_known_cases():
    x = _images()
    centre = torch.tensor([[PAD, PAD, 0]] * 5)
    out = crop_flip(x, centre)
    assert out.shape == x.shape and out.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(out, x)  # the centred window without a flip is the image
    assert torch.equal(crop_flip(x, torch.tensor([[PAD, PAD, 1]] * 5)), x.flip(-1))
    corner = crop_flip(x, torch.tensor([[0, 2 * PAD, 0]] * 5))  # window moved up and right
    assert torch.equal(corner[:, :, PAD:, :-PAD], x[:, :, :-PAD, PAD:])
    assert torch.all(corner[:, :, :PAD] == 0) and torch.all(corner[:, :, :, -PAD:] == 0)


def test_crop_flip_each_example_its_own_draw():
    x = _images(b=3)
    draws = torch.tensor([[PAD, PAD, 0], [PAD, PAD, 1], [1, 7, 1]])
    out = crop_flip(x, draws)
    for i in range(3):
        assert torch.equal(out[i:i + 1], crop_flip(x[i:i + 1], draws[i:i + 1]))
    assert torch.equal(out[1], x[1].flip(-1))


def _take(batches, steps):
    idx, draws = zip(*[next(batches) for _ in range(steps)], strict=True)
    return torch.stack(idx), None if draws[0] is None else torch.stack(draws)


def test_minibatches_deterministic_per_seed_and_across_chunks():
    def make(seed, augment="flip_crop"):
        gens = [torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed + 7)]
        return Minibatches([50, 70], 16, gens, "cpu", augment)

    steps = CHUNK + 5  # crosses a chunk boundary
    idx, draws = _take(make(0), steps)
    assert idx.shape == (steps, 2, 16) and draws.shape == (steps, 2, 16, 3)
    assert int(idx[:, 0].max()) < 50 and int(idx[:, 1].max()) < 70
    assert int(draws[..., :2].max()) <= 2 * PAD and set(draws[..., 2].unique().tolist()) == {0, 1}
    again = _take(make(0), steps)
    assert torch.equal(idx, again[0]) and torch.equal(draws, again[1])
    assert not torch.equal(idx, _take(make(1), steps)[0])
    # every epoch (3 full batches of the 50) is a permutation: no example twice
    first = idx[:3, 0].reshape(-1)
    assert first.unique().numel() == first.numel()


def test_minibatches_without_augmentation_keep_the_old_data_order():
    # Grids trained before augmentation existed drew one randperm per epoch and nothing else.
    gen = torch.Generator().manual_seed(3)
    idx, draws = _take(Minibatches([40], 16, [gen], "cpu"), 6)
    ref = torch.Generator().manual_seed(3)
    expected = []
    for _ in range(3):  # 2 batches of 16 per epoch of 40
        order = torch.randperm(40, generator=ref)
        expected += [order[:16], order[16:32]]
    assert draws is None and torch.equal(idx[:, 0], torch.stack(expected))


def test_check_names_the_problem():
    check("flip_crop", (3, 32, 32))
    with pytest.raises(UserError, match="needs images; the inputs have shape \\(1, 40\\)"):
        check("flip_crop", (1, 40))
    with pytest.raises(UserError, match="must be one of none, flip_crop"):
        check("mixup", (3, 32, 32))
