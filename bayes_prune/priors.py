"""Priors of the hierarchical model (numpy only: the query path reads them back from a saved
posterior to pool a pair never fitted and to tell what the data identified).

The values and their reasons are in :mod:`bayes_prune.model`'s docstring.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from .coords import KAPPA, KAPPA_GAMMA, ZETA, Layout
from .errors import UserError

__all__ = ["Priors"]


def _prior(mean: dict, sd: dict):
    return field(default_factory=lambda: {"mean": dict(mean), "sd": dict(sd)})


@dataclass(frozen=True)
class Priors:
    """Priors of the model. ``mu`` holds Normal mean/sd per coefficient; ``spread`` the sd of
    the arch, task and pair effects per coefficient; the rest are the medians of LogNormal
    noise scales and the sd of their logs.

    ``logit_eps_up`` has sd 1: a priori the plateau lies 50-98 % of the way from the group's
    pivot error to random guessing, where the paper found it. With sd 1.5 a grid that never
    reaches the plateau (a CIFAR-10 ResNet pruned to 2 %, T5 to 25 %) put it just above its
    highest error, a ridge that cost the sampler divergences and R-hat 1.02."""

    mu: dict = _prior(
        {"log_gamma": np.log(2.0), "log_p_centre": -3.0, "phi": 0.5, "psi": 1.0,
         "logit_eps_up": 2.0, "log_dense": np.log(0.15), "logit_share_a": 0.0,
         "logit_share_b": 0.0, "log_slope_n": np.log(0.2), "log_slope_m": np.log(0.15),
         KAPPA: 0.0, KAPPA_GAMMA: 0.0, "phi2": 0.0, "psi2": 0.0, ZETA: 0.0},
        {"log_gamma": 0.5, "log_p_centre": 1.5, "phi": 0.75, "psi": 0.75, "logit_eps_up": 1.0,
         "log_dense": 1.0, "logit_share_a": 0.5, "logit_share_b": 0.5, "log_slope_n": 0.75,
         "log_slope_m": 0.75, KAPPA: 0.5, KAPPA_GAMMA: 0.5, "phi2": 0.5, "psi2": 0.5,
         ZETA: 0.5})
    spread: dict = field(default_factory=lambda: {
        k: {"log_gamma": f * 0.3, "log_p_centre": f * 0.75, "phi": f * 0.3, "psi": f * 0.3,
            "logit_eps_up": f * 0.5, "log_dense": f * 0.5, "logit_share_a": f * 0.25,
            "logit_share_b": f * 0.25, "log_slope_n": f * 0.3, "log_slope_m": f * 0.3,
            KAPPA: f * 0.2, KAPPA_GAMMA: f * 0.2, "phi2": f * 0.25, "psi2": f * 0.25,
            ZETA: f * 0.5}
        for k, f in (("arch", 1.0), ("task", 1.0), ("pair", 1 / 3))})
    # Noise scales: LogNormal(log median, 0.5). Bounded away from 0, unlike HalfNormal: with
    # 2-3 seeds a configuration, a scale near 0 opens a funnel the sampler cannot enter.
    sigma: float = 0.05  # relative point noise
    sigma_seed: float = 0.04  # run-to-run spread of the dense error (the paper: 3.4 %)
    tau: float = 0.1  # scatter of configurations around the dense law
    tau_m: float = 0.1  # scatter of configurations' log invariant around the law (fit's option)
    noise_sd: float = 0.5  # sd of the noise scales' log
    # Beta(a, b) of the AR(1) coefficient of a run's successive residuals (fit's ar1)
    rho: tuple = (2.0, 2.0)

    def to_dict(self) -> dict:
        return asdict(self)

    def scales(self, names) -> tuple[list, list, list, list]:
        """Per coefficient in ``names``: the sd of ``mu`` and the arch, task, pair spreads."""
        return ([self.mu["sd"][n] for n in names],
                *([self.spread[k][n] for n in names] for k in ("arch", "task", "pair")))

    def follow(self, lay: Layout) -> Priors:
        """These priors with two centres moved to the grid's own range: the dense level's
        (``log_dense``) to the median over groups of the envelope value that gives their
        reference dense error, and the pivot's (``log_p_centre``) to the median over groups of
        the density where their runs reach their pivot error
        (:func:`~bayes_prune.coords.group_anchors`). A grid of CIFAR-10 ResNets (dense error
        6 %, pruned to 2 %) and one of small MLPs (15 %, pruned to 0.01 %) then start from
        priors of the same shape around their own data."""
        g = lay.groups
        r = np.minimum(np.exp(g["log_err_ref"]) / g["eps0"], 0.99)
        mean = {**self.mu["mean"],
                "log_dense": float(np.median(np.log(g["eps0"] * r / np.sqrt(1 - r**2)))),
                "log_p_centre": float(np.median(g["log_d_pivot"]))}
        return Priors(**{**self.to_dict(), "mu": {"mean": mean, "sd": dict(self.mu["sd"])}})

    @classmethod
    def from_dict(cls, d: dict) -> Priors:
        base = cls().to_dict()
        for k, v in d.items():
            if k not in base:
                raise UserError(f"unknown prior {k!r}; known: {', '.join(base)}")
            if isinstance(v, dict):
                for kk, vv in v.items():
                    base[k][kk] = {**base[k][kk], **vv} if isinstance(vv, dict) else vv
            else:
                base[k] = v
        return cls(**base)
