"""The grid arranged for the hierarchical model, and the model's coefficients mapped to the law.

numpy only (no pymc, no torch): the PyMC model (:mod:`bayes_prune.model`) and the query path
(:mod:`bayes_prune.posterior`) both build on it.

Levels: a *group* is an (arch, task) pair; a *configuration* is (task, arch, depth, width,
n_train); a *run* is a configuration with its seed (one IMP trajectory).

Per group the model samples the coefficient vector ``theta`` (:data:`COEFS`), in an
unconstrained, centred parametrisation:

==============  ==============================================================================
log_gamma       log of the power-law slope gamma
log_p_centre    log p' - phi <log depth> - psi <log width> + h / gamma: the log density, at
                the data's centre, of the middle of the power-law region (log p' itself is
                strongly correlated with phi and psi, and the knee p with gamma: the line
                pivots about the data it passes through, not about its knee). ``h`` is
                half the log ratio of the high plateau to the grid's median dense error
                (:attr:`Centres.half_span`), a constant of the grid
phi, psi        exponents of depth and width in the invariant m* = l^phi w^psi d
logit_eps_up    eps_up = eps0 * sigmoid(logit_eps_up): the high plateau, below random guessing
log_dense       log of the envelope eps_tilde = a n^-alpha + b m^-beta + c_inf at the data's
                centre (<log n>, <log m>): the level every configuration's dense error sets
logit_share_a   the shares of the three terms in it at the centre, w = softmax(0, za, zb)
logit_share_b   for (c_inf, a n^-alpha, b m^-beta)
log_slope_n     log of the local slope -d log eps_tilde / d log n = alpha w_a at the centre
log_slope_m     log of -d log eps_tilde / d log m = beta w_b at the centre
==============  ==============================================================================

The dense law is sampled as level, shares and local slopes, not as (a, alpha, b, beta, c_inf):
a grid pins down the level and the two slopes at its centre but hardly how the level splits
into three terms (that is curvature), and in (a, alpha, b, beta, c_inf) those few stiff
directions are sums of every coefficient, a geometry no diagonal mass matrix can follow.

The envelope's transition width ``eta`` is fixed at the random-guess error ``eps0`` (the dense
error saturates at guessing); a free ``eta`` traded off against ``a``, ``b`` and ``c_inf`` and
left the sampler multimodal on grids of a few dozen configurations.

==============  ==============================================================================
kappa_n         (variant ``p_depends_on_n``) d log p' / d log n_train
kappa_gamma_n   (variant ``gamma_depends_on_n``) d log gamma / d log n_train
phi2, psi2      (variant ``curved``) curvature of the invariant in log depth and log width:
                log m* = log d + phi log l + psi log w + phi2/2 (log l - <log l>)^2
                + psi2/2 (log w - <log w>)^2; both 0 is the paper's invariant
==============  ==============================================================================

The variants' extra coefficients are 0 under the paper's law and have priors centred there,
so the data have to move them. They are for fits that must extrapolate: a grid of small
networks barely informs a curvature, and its posterior spread widens a prediction band with
the square of the distance from the grid's centre.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .grid import CONFIG_KEY, GROUP_KEY, random_errors, run_key
from .law import DenseLaw, PruneLaw

__all__ = ["COEFS", "KAPPA", "KAPPA_GAMMA", "CURVATURE", "Centres", "Layout", "curvature",
           "layout", "laws", "pooling_cov"]

COEFS = ("log_gamma", "log_p_centre", "phi", "psi", "logit_eps_up", "log_dense",
         "logit_share_a", "logit_share_b", "log_slope_n", "log_slope_m")
KAPPA = "kappa_n"
KAPPA_GAMMA = "kappa_gamma_n"
CURVATURE = ("phi2", "psi2")


@dataclass(frozen=True)
class Centres:
    """Means of log depth, log width, log n_train and log params_total over the fitted grid,
    and ``half_span``: half of log(0.88 eps0 / dense error), medians over the grid's dense
    points (the log density span of the middle of a typical power-law region, times gamma)."""

    log_depth: float
    log_width: float
    log_n: float
    log_params: float
    half_span: float = 0.0

    @classmethod
    def of(cls, configs: pd.DataFrame, points: pd.DataFrame | None = None) -> Centres:
        span = 0.0
        if points is not None:
            dense = points[points["round"] == 0]
            span = 0.5 * float(np.log(0.88 * dense["eps0"].median()
                                      / max(dense["test_error"].median(), 1e-3)))
        return cls(*(float(np.log(configs[c].to_numpy(float)).mean())
                     for c in ("depth", "width", "n_train", "params_total")),
                   half_span=max(span, 0.05))


def curvature(theta, centres: Centres, depth, width, xp=np):
    """The ``curved`` variant's term of log m*: ``phi2/2 (log l - <log l>)^2 + psi2/2 (log w -
    <log w>)^2``."""
    return 0.5 * (theta["phi2"] * (xp.log(depth) - centres.log_depth) ** 2
                  + theta["psi2"] * (xp.log(width) - centres.log_width) ** 2)


def laws(theta, centres: Centres, eps0, n_train=None, depth=None, width=None,
         xp=np) -> tuple[PruneLaw, DenseLaw]:
    """Map the coefficients (a mapping from :data:`COEFS` names to arrays that broadcast) to the
    law's containers. ``n_train`` is needed only when ``theta`` has :data:`KAPPA` or
    :data:`KAPPA_GAMMA`; ``depth`` and ``width`` only with :data:`CURVATURE` (without them,
    the grid's centre). The curvature is folded into ``p_prime``, which then varies with depth
    and width: the law depends on ``log m* - log p'`` only."""
    phi, psi = theta["phi"], theta["psi"]
    log_gamma = theta["log_gamma"]
    if KAPPA_GAMMA in theta:
        log_gamma = log_gamma + theta[KAPPA_GAMMA] * (xp.log(n_train) - centres.log_n)
    gamma = xp.exp(log_gamma)
    log_p = (theta["log_p_centre"] - centres.half_span / gamma + phi * centres.log_depth
             + psi * centres.log_width)
    if KAPPA in theta:
        log_p = log_p + theta[KAPPA] * (xp.log(n_train) - centres.log_n)
    if CURVATURE[0] in theta and depth is not None:
        log_p = log_p - curvature(theta, centres, depth, width, xp=xp)
    prune = PruneLaw(gamma=gamma, p_prime=xp.exp(log_p),
                     eps_up=eps0 / (1.0 + xp.exp(-theta["logit_eps_up"])), phi=phi, psi=psi)
    za, zb, level = theta["logit_share_a"], theta["logit_share_b"], theta["log_dense"]
    norm = xp.logaddexp(0.0, xp.logaddexp(za, zb))  # log(1 + e^za + e^zb)
    log_wa, log_wb = za - norm, zb - norm
    alpha = xp.exp(theta["log_slope_n"] - log_wa)
    beta = xp.exp(theta["log_slope_m"] - log_wb)
    dense = DenseLaw(a=xp.exp(level + log_wa + alpha * centres.log_n), alpha=alpha,
                     b=xp.exp(level + log_wb + beta * centres.log_params), beta=beta,
                     c_inf=xp.exp(level - norm), eta=eps0)
    return prune, dense


@dataclass(frozen=True)
class Layout:
    """A validated grid indexed for the model: one row per point, config and run."""

    points: pd.DataFrame  # the grid, with integer columns group_idx, config_idx, run_idx
    groups: pd.DataFrame  # arch, task, arch_idx, task_idx, eps0, n_test
    configs: pd.DataFrame  # CONFIG_KEY, params_total, params_prunable, group_idx
    runs: pd.DataFrame  # config_idx, seed, group_idx
    archs: list[str]
    tasks: list[str]
    centres: Centres


def layout(grid: pd.DataFrame) -> Layout:
    """Index a validated grid by group, configuration and run (sorted, so stable)."""
    pts = grid.reset_index(drop=True).copy()
    pts["eps0"] = random_errors(pts).to_numpy(float)
    if "params_prunable" not in pts:
        pts["params_prunable"] = pts["params_total"]
    archs, tasks = sorted(pts["arch"].unique()), sorted(pts["task"].unique())
    groups = (pts.groupby(GROUP_KEY, sort=True)
              .agg(eps0=("eps0", "first"), n_test=("n_test", "median")).reset_index())
    groups["arch_idx"] = groups["arch"].map({a: i for i, a in enumerate(archs)})
    groups["task_idx"] = groups["task"].map({t: i for i, t in enumerate(tasks)})
    pts["group_idx"] = pts.groupby(GROUP_KEY, sort=True).ngroup()
    pts["config_idx"] = pts.groupby(CONFIG_KEY, sort=True).ngroup()
    pts["run_idx"] = pts.groupby(run_key(pts), sort=True).ngroup()
    configs = (pts.groupby("config_idx", sort=True)
               .agg(**{c: (c, "first") for c in CONFIG_KEY + ["params_total",
                                                              "params_prunable", "group_idx"]})
               .reset_index(drop=True))
    runs = (pts.groupby("run_idx", sort=True)
            .agg(config_idx=("config_idx", "first"), seed=("seed", "first"),
                 group_idx=("group_idx", "first")).reset_index(drop=True))
    return Layout(pts, groups, configs, runs, archs, tasks, Centres.of(configs, pts))


def pooling_cov(archs, tasks, sd_mu, s_arch, s_task, s_pair) -> np.ndarray:
    """Prior covariance across groups of one coefficient under crossed pooling.

    ``theta_g = mu + u[arch(g)] + v[task(g)] + e_g`` with independent normal ``mu`` (sd
    ``sd_mu``), ``u`` (``s_arch``), ``v`` (``s_task``) and ``e`` (``s_pair``) makes the groups'
    coefficients jointly normal with covariance ``sd_mu^2 + s_arch^2 [same arch] +
    s_task^2 [same task] + s_pair^2 [same group]``. ``archs``/``tasks`` list each group's
    labels; the scales are arrays over coefficients ``(K,)``; the result is ``(K, G, G)``."""
    a, t = np.asarray(archs), np.asarray(tasks)
    same_a = (a[:, None] == a[None, :]).astype(float)
    same_t = (t[:, None] == t[None, :]).astype(float)
    eye = np.eye(len(a))
    sq = [np.asarray(x, float)[:, None, None] ** 2 for x in (sd_mu, s_arch, s_task, s_pair)]
    return sq[0] + sq[1] * same_a + sq[2] * same_t + sq[3] * eye
