"""Global magnitude pruning, pure: weights and masks in, new masks out."""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["magnitude_prune", "density", "apply_masks"]


def magnitude_prune(weights: Sequence[torch.Tensor], masks: Sequence[torch.Tensor],
                    fraction: float) -> list[torch.Tensor]:
    """Prune ``fraction`` of the weights still alive, smallest ``|w|`` first, across all layers.

    ``masks`` hold 1 for a kept weight and 0 for a pruned one (same shapes as ``weights``).
    ``round(fraction * alive)`` weights are pruned; ties in ``|w|`` go to the earlier weight
    in (layer, flat index) order, so the result is deterministic. Pruned weights stay pruned.
    Returns new float masks; the inputs are not modified.
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"fraction must be in [0, 1), got {fraction}")
    for m in masks:
        if not bool(((m == 0) | (m == 1)).all()):
            raise ValueError("a mask holds values other than 0 and 1")
    flat_masks = torch.cat([m.detach().reshape(-1) for m in masks]).bool()
    scores = torch.cat([w.detach().abs().reshape(-1) for w in weights]).to(torch.float64)
    alive = torch.nonzero(flat_masks).squeeze(1)
    k = int(round(fraction * alive.numel()))
    new = flat_masks.clone()
    if k:
        order = torch.sort(scores[alive], stable=True).indices
        new[alive[order[:k]]] = False
    out, start = [], 0
    for m in masks:
        out.append(new[start:start + m.numel()].reshape(m.shape).to(torch.float32))
        start += m.numel()
    return out


def density(masks: Sequence[torch.Tensor]) -> float:
    """Fraction of prunable weights left."""
    return float(sum(m.sum() for m in masks) / sum(m.numel() for m in masks))


@torch.no_grad()
def apply_masks(weights: Sequence[torch.Tensor], masks: Sequence[torch.Tensor]) -> None:
    """Zero the pruned weights in place: ``weights[i] *= masks[i]`` for every layer at once.

    One fused multiply over all layers (``torch._foreach_mul_``) instead of a Python loop of
    one kernel per layer: a ResNet-56 has 57 prunable layers, and on a GPU each launch costs
    about as much as the multiply itself. Shapes of ``weights[i]`` and ``masks[i]`` match.
    """
    if weights:
        torch._foreach_mul_(list(weights), list(masks))
