"""Synthetic error grids drawn from known coefficients, for tests, demos and recovery checks.

Each run draws its dense error from the dense-error envelope times a per-run (seed) offset
``exp(seed_sd * z)``; every point of the run follows the joint law from that run's own dense
error, times a per-point relative noise ``exp(rel_noise * z)``; the reported error is then
``mistakes / n_test`` with ``mistakes ~ Binomial(n_test, error)`` (finite test-set noise).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .law import DenseLaw, PruneLaw, dense_error, error

__all__ = ["Truth", "synthetic_params", "default_truths", "simulate_grid"]


@dataclass(frozen=True)
class Truth:
    """The known coefficients of one (arch, task) group of a synthetic grid."""

    law: PruneLaw
    dense: DenseLaw
    eps0: float = 0.9


def synthetic_params(depth, width, n_in: int = 40, n_out: int = 10):
    """Weight count of an MLP with ``depth`` hidden layers of ``width`` units (no biases): the
    size used by synthetic grids for the dense-error law."""
    depth, width = np.asarray(depth), np.asarray(width)
    return n_in * width + (depth - 1) * width * width + width * n_out


def default_truths() -> dict[tuple[str, str], Truth]:
    """Four groups, 2 architectures x 2 tasks, with coefficients in the range real grids show
    (transition near a few % density for mid-size networks, eps_up near random guessing)."""
    dense = DenseLaw.of(a=1.0, alpha=0.35, b=2.0, beta=0.4, c_inf=0.02, eta=0.9)
    return {
        ("syn-a", "syn-x"): Truth(PruneLaw(gamma=2.0, p_prime=0.6, eps_up=0.88, phi=0.5, psi=1.0),
                                  dense),
        ("syn-a", "syn-y"): Truth(PruneLaw(gamma=1.6, p_prime=0.9, eps_up=0.85, phi=0.5, psi=1.0),
                                  DenseLaw.of(1.5, 0.35, 2.0, 0.4, 0.04, 0.9)),
        ("syn-b", "syn-x"): Truth(PruneLaw(gamma=2.6, p_prime=0.3, eps_up=0.87, phi=0.3, psi=1.2),
                                  DenseLaw.of(1.0, 0.35, 3.0, 0.45, 0.02, 0.9)),
        ("syn-b", "syn-y"): Truth(PruneLaw(gamma=2.1, p_prime=0.45, eps_up=0.84, phi=0.3, psi=1.2),
                                  DenseLaw.of(1.5, 0.35, 3.0, 0.45, 0.04, 0.9)),
    }


def simulate_grid(
    truths: Mapping[tuple[str, str], Truth] | None = None,
    depths: Iterable[int] = (2, 3, 4),
    widths: Iterable[int] = (16, 32, 64, 128),
    n_trains: Iterable[int] = (1000, 2000, 4000),
    seeds: Iterable[int] = (0, 1, 2),
    rounds: int = 40,
    seed_sd: float = 0.03,
    rel_noise: float = 0.0,
    n_test: int | None = 1000,
    rng: int | np.random.Generator = 0,
    prune_fraction: float = 0.2,
) -> pd.DataFrame:
    """Draw an error grid (see :mod:`bayes_prune.grid`) from known coefficients.

    ``truths`` maps (arch, task) to :class:`Truth` (default :func:`default_truths`). Rounds
    0..``rounds`` are recorded at density ``(1 - prune_fraction)^round``. ``n_test=None``
    skips the binomial noise (the grid then records ``n_test = 10**9``); with ``seed_sd = 0``,
    ``rel_noise = 0`` and ``n_test=None`` the grid is exactly the law.
    """
    truths = default_truths() if truths is None else truths
    rng = np.random.default_rng(rng)
    r = np.arange(rounds + 1)
    density = (1.0 - prune_fraction) ** r
    frames = []
    for (arch, task), truth in truths.items():
        for depth, width, n_train, seed in itertools.product(depths, widths, n_trains, seeds):
            params = int(synthetic_params(depth, width))
            eps_np = dense_error(params, n_train, truth.dense, truth.eps0)
            eps_np = eps_np * np.exp(seed_sd * rng.standard_normal())
            mean = error(density, depth, width, eps_np, truth.law)
            mean = np.clip(mean * np.exp(rel_noise * rng.standard_normal(r.size)), 0.0, 1.0)
            if n_test is None:
                test_error, n = mean, 10**9
            else:
                test_error, n = rng.binomial(n_test, mean) / n_test, n_test
            frames.append(pd.DataFrame({
                "task": task, "arch": arch, "depth": depth, "width": width, "n_train": n_train,
                "seed": seed, "round": r, "density": density, "test_error": test_error,
                "n_test": n, "params_total": params,
                "params_nonzero": np.round(params * density).astype(np.int64),
                "random_error": truth.eps0, "source": "synthetic",
            }))
    return pd.concat(frames, ignore_index=True)
