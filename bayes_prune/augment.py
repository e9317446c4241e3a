"""Minibatches of runs' training sets, drawn on the CPU and augmented on the data's device.

A run's data order comes from its generator ``(seed, round)``: a new permutation whenever the
epoch runs out (an epoch's tail shorter than a batch is skipped). With augmentation, each
epoch also draws every example's random crop offset and horizontal flip, right after its
permutation. The draws are made on the CPU, so a seed gives the same batches on every device;
they travel to the device in chunks of steps, and the crops and flips are done there on the
whole batch at once (:func:`crop_flip`): the training set never leaves the device.

Augmentations (the recipe's ``augment``):

- ``none``: the examples as they are (the only choice for 1-D inputs).
- ``flip_crop``: the CIFAR recipe of He et al. (2016), which the pruning papers use: pad 4
  pixels on every side, crop a random 32 x 32 (H x W) window, flip left-right with
  probability 1/2. The padding is zero in standardised units, i.e. the mean pixel.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from .errors import UserError

__all__ = ["AUGMENTS", "check", "crop_flip", "Minibatches"]

AUGMENTS = ("none", "flip_crop")
PAD = 4  # pixels of padding for the random crop (He et al. 2016)
CHUNK = 256  # steps of draws moved to the device at once: few copies, little memory


def check(augment: str, input_shape: tuple[int, ...]) -> None:
    """Raise :class:`UserError` unless ``augment`` is known and fits inputs of ``input_shape``
    (one example, channels first)."""
    if augment not in AUGMENTS:
        raise UserError(f"recipe.augment = {augment!r} must be one of {', '.join(AUGMENTS)}")
    if augment != "none" and len(input_shape) != 3:
        raise UserError(f"recipe.augment = {augment!r} needs images; the inputs have shape "
                        f"{input_shape}")


def crop_flip(x: torch.Tensor, draws: torch.Tensor, pad: int = PAD) -> torch.Tensor:
    """Random crops and flips of a batch, done by one gather.

    ``x`` ``(B, C, H, W)``; ``draws`` ``(B, 3)`` integers: the crop's row and column offsets in
    ``[0, 2 pad]`` of the zero-padded image and a flip flag (0/1). Returns ``(B, C, H, W)`` in
    the channels-last layout (what the convolutions want)."""
    b, _, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    draws = draws.long()
    rows = draws[:, 0:1] + torch.arange(h, device=x.device)  # (B, H)
    cols = torch.arange(w, device=x.device).expand(b, w)
    cols = torch.where(draws[:, 2:3].bool(), w - 1 - cols, cols) + draws[:, 1:2]  # (B, W)
    picked = padded.permute(0, 2, 3, 1)[torch.arange(b, device=x.device)[:, None, None],
                                        rows[:, :, None], cols[:, None, :]]  # (B, H, W, C)
    return picked.permute(0, 3, 1, 2)


class _Epochs:
    """One run's stream of minibatch draws: ``next_step()`` -> indices ``(B,)`` and, with
    augmentation, crop/flip draws ``(B, 3)``, on the CPU."""

    def __init__(self, n: int, batch: int, generator: torch.Generator, augment: bool):
        self.n, self.batch, self.gen, self.augment = n, batch, generator, augment
        self._new_epoch()

    def _new_epoch(self) -> None:
        self.order, self.pos = torch.randperm(self.n, generator=self.gen), 0
        if self.augment:
            shifts = torch.randint(0, 2 * PAD + 1, (self.n, 2), generator=self.gen)
            flips = torch.randint(0, 2, (self.n, 1), generator=self.gen)
            self.draws = torch.cat([shifts, flips], 1).to(torch.uint8)

    def next_step(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.pos + self.batch > self.n:  # a new epoch: a new order
            self._new_epoch()
        part = slice(self.pos, self.pos + self.batch)
        self.pos += self.batch
        return self.order[part], (self.draws[part] if self.augment else None)


class Minibatches:
    """The minibatches of K runs, step by step, on ``device``.

    ``ns[k]`` examples in run k's training set, drawn by ``generators[k]``. Iterating yields,
    per step, the example indices ``(K, B)`` (long) and the crop/flip draws ``(K, B, 3)``
    (uint8; None without augmentation), both on ``device``."""

    def __init__(self, ns: Sequence[int], batch: int, generators: Sequence[torch.Generator],
                 device: str | torch.device, augment: str = "none"):
        self.runs = [_Epochs(n, batch, g, augment != "none")
                     for n, g in zip(ns, generators, strict=True)]
        self.device, self.augment = device, augment != "none"
        self._idx, self._draws, self._at = None, None, CHUNK

    def __iter__(self):
        return self

    def __next__(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self._at == CHUNK:
            steps = [[run.next_step() for _ in range(CHUNK)] for run in self.runs]
            self._idx = torch.stack([torch.stack([s[0] for s in run]) for run in steps], 1)
            self._idx = self._idx.to(self.device, non_blocking=True)  # (CHUNK, K, B)
            if self.augment:
                self._draws = torch.stack([torch.stack([s[1] for s in run]) for run in steps],
                                          1).to(self.device, non_blocking=True)
            self._at = 0
        self._at += 1
        draws = self._draws[self._at - 1] if self.augment else None
        return self._idx[self._at - 1], draws
