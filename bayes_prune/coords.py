"""The grid arranged for the hierarchical model, and the model's coefficients mapped to the law.

numpy only (no pymc, no torch): the PyMC model (:mod:`bayes_prune.model`) and the query path
(:mod:`bayes_prune.posterior`) both build on it.

Levels: a *group* is an (arch, task) pair; a *configuration* is (task, arch, depth, width,
n_train); a *run* is a configuration with its seed (one IMP trajectory).

Per group the model samples the coefficient vector ``theta`` (:data:`COEFS`), in an
unconstrained, centred parametrisation:

==============  ==============================================================================
log_gamma       log of the power-law slope gamma
log_p_centre    log p' - phi <log depth> - psi <log width> + (log eps_up - k_g) / gamma: the
                log invariant, at the data's centre, where the power law
                eps_up (p'/m*)^gamma has fallen to the group's pivot error e^k_g, the middle
                (in log error) of the part of the curve its grid shows
                (:func:`group_anchors`). log p' itself is strongly correlated with phi and
                psi, and the knee p with gamma and eps_up: the curve pivots about the data
                it passes through, not about its knee. A grid that never leaves the dense
                plateau by much (a large network pruned to 2 %) shows only the onset of the
                power law: there the pivot sits near the onset, and eps_up, which the data
                cannot see, moves p' without moving the curve where it was measured
phi, psi        exponents of depth and width in the invariant m* = l^phi w^psi d
logit_eps_up    eps_up = e^k_g + (eps0 - e^k_g) sigmoid(logit_eps_up): the high plateau, between
                the group's pivot error and random guessing
log_dense       log of the envelope eps_tilde = a n^-alpha + b m^-beta + c_inf at the group's
                own centre (its mean log n and log m, :func:`dense_centres`): the level every
                configuration's dense error sets
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
kappa_n         (variant ``p_depends_on_n``) d log p' / d log n_train, about the group's own
                mean log n_train (``log_gamma`` and ``log_p_centre`` are the group's there)
kappa_gamma_n   (variant ``gamma_depends_on_n``) d log gamma / d log n_train, likewise
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

__all__ = ["COEFS", "KAPPA", "KAPPA_GAMMA", "ZETA", "CURVATURE", "Centres", "Layout", "curvature",
           "dense_centres", "dense_law", "group_anchors", "layout", "log_plateau", "pooling_cov",
           "prune_law"]

COEFS = ("log_gamma", "log_p_centre", "phi", "psi", "logit_eps_up", "log_dense",
         "logit_share_a", "logit_share_b", "log_slope_n", "log_slope_m")
KAPPA = "kappa_n"
KAPPA_GAMMA = "kappa_gamma_n"
# the dense law's size is params x (depth / the group's mean depth)^zeta (the variant dense_depth)
ZETA = "zeta"
CURVATURE = ("phi2", "psi2")


@dataclass(frozen=True)
class Centres:
    """Means of log depth, log width, log n_train and log params_total over the fitted grid,
    and ``log_err_pivot``, the median over groups of their pivot errors
    (:func:`group_anchors`): the pivot of a pair never fitted."""

    log_depth: float
    log_width: float
    log_n: float
    log_params: float
    log_err_pivot: float = float(np.log(0.3))

    @classmethod
    def of(cls, configs: pd.DataFrame, anchors: pd.DataFrame | None = None) -> Centres:
        pivot = (float(anchors["log_err_pivot"].median()) if anchors is not None
                 else float(np.log(0.3)))
        return cls(*(float(np.log(configs[c].to_numpy(float)).mean())
                     for c in ("depth", "width", "n_train", "params_total")),
                   log_err_pivot=pivot)


PLATEAU_GUESS = 0.88  # eps_up / eps0 a priori (the prior median of logit_eps_up is logit 0.88)


def group_anchors(points: pd.DataFrame) -> pd.DataFrame:
    """Where each group's data lie, for its parametrisation and its priors. Per group (rows in
    sorted :data:`GROUP_KEY` order), medians over its runs of:

    - ``log_err_ref``: the run's dense error (round 0), or its lowest error if it has none;
    - ``log_err_pivot``: ``log_err_ref`` plus half the run's observed log rise (its highest
      error over its reference), capped at half the rise to ``0.88 eps0``: the middle, in log
      error, of the part of the curve the grid shows (at least 2.5 % above the reference, at
      most 99 % of ``eps0``);
    - ``log_d_pivot``: the log of the largest density at which the run's error reaches the
      pivot (its smallest density if it never does).

    ``points`` needs ``eps0`` and a ``run_idx`` column (as :func:`layout` makes them)."""
    err = np.log(np.maximum(points["test_error"].to_numpy(float),
                            0.5 / points["n_test"].to_numpy(float)))
    pts = points.assign(_e=err, _logd=np.log(points["density"].to_numpy(float)))
    per_run = pts.groupby("run_idx", sort=True)
    ref = per_run.apply(lambda r: r.loc[r["round"] == 0, "_e"].median()
                        if (r["round"] == 0).any() else r["_e"].min(), include_groups=False)
    top = per_run["_e"].max()
    log_eps0 = np.log(per_run["eps0"].first())
    pivot = ref + 0.5 * np.clip(np.minimum(top - ref, np.log(PLATEAU_GUESS) + log_eps0 - ref),
                                0.05, None)
    # strictly below random guessing, where the plateau eps_up must fit above it
    pivot = np.minimum(pivot, log_eps0 + np.log(0.99))
    pts = pts.assign(_pivot=pts["run_idx"].map(pivot))
    reached = pts[pts["_e"] >= pts["_pivot"]].groupby("run_idx")["_logd"].max()
    d_pivot = reached.reindex(pivot.index).fillna(per_run["_logd"].min())
    runs = per_run[GROUP_KEY].first().assign(log_err_ref=ref, log_err_pivot=pivot,
                                             log_d_pivot=d_pivot)
    return runs.groupby(GROUP_KEY, sort=True)[["log_err_ref", "log_err_pivot",
                                              "log_d_pivot"]].median().reset_index()


def dense_centres(groups: pd.DataFrame, index) -> dict:
    """The centres of the dense law (:func:`dense_law`'s ``log_n_centre`` and
    ``log_params_centre``) of the groups at ``index`` (an int or an array) of ``groups``
    (``Layout.groups``, or a posterior's): each group's own mean log n_train and log weight
    count. About the grid's centre instead, a group trained at one n_train far from the other
    groups' (renda2020's CIFAR-10 ResNets beside an ImageNet ResNet-50) has its dense level
    there as an extrapolation along a slope its data cannot see: level and slope then move
    together along a curved ridge, where the chains diverged (11 divergences at target
    acceptance 0.99; none about its own centre)."""
    return {"log_n_centre": np.asarray(groups["log_n_centre"])[index],
            "log_params_centre": np.asarray(groups["log_params_centre"])[index]}


def curvature(theta, centres: Centres, depth, width, xp=np):
    """The ``curved`` variant's term of log m*: ``phi2/2 (log l - <log l>)^2 + psi2/2 (log w -
    <log w>)^2``."""
    return 0.5 * (theta["phi2"] * (xp.log(depth) - centres.log_depth) ** 2
                  + theta["psi2"] * (xp.log(width) - centres.log_width) ** 2)


def log_plateau(theta, eps0, pivot, xp=np):
    """The log high-error plateau ``log eps_up`` of ``theta``'s draws, for a group of
    random-guess error ``eps0`` and log pivot error ``pivot``."""
    # eps_up = e^pivot + (eps0 - e^pivot) sigmoid(logit_eps_up): the plateau lies above the
    # middle of the rise the grid shows (below it, the pivot would be a level the curve never
    # reaches), and below random guessing
    return xp.logaddexp(pivot, xp.log(eps0 - xp.exp(pivot))
                        - xp.logaddexp(0.0, -theta["logit_eps_up"]))


def prune_law(theta, centres: Centres, eps0, n_train=None, depth=None, width=None,
              log_err_pivot=None, log_n_centre=None, xp=np) -> PruneLaw:
    """Map the coefficients (a mapping from :data:`COEFS` names to arrays that broadcast) to the
    joint pruning law (the dense law is :func:`dense_law`'s, centred where the group's fit
    centred it). ``n_train`` is needed only when ``theta`` has :data:`KAPPA` or
    :data:`KAPPA_GAMMA`; ``depth`` and ``width`` only with :data:`CURVATURE` (without them,
    the grid's centre). The curvature is folded into ``p_prime``, which then varies with depth
    and width: the law depends on ``log m* - log p'`` only. ``log_err_pivot`` is the group's
    pivot error (:func:`pivot_errors`; broadcast like ``eps0``), by default the grid's
    (:attr:`Centres.log_err_pivot`). ``log_n_centre`` is the group's own mean log n_train
    (``Layout.groups``; broadcast like ``eps0``), about which :data:`KAPPA` and
    :data:`KAPPA_GAMMA` act, by default the grid's: a group trained at one n_train then gets no
    term of them at all, where the grid's centre would make them an offset of ``log_gamma`` and
    ``log_p_centre`` that its data cannot tell apart (a second mode in its posterior)."""
    phi, psi = theta["phi"], theta["psi"]
    log_gamma = theta["log_gamma"]
    if KAPPA in theta or KAPPA_GAMMA in theta:
        dn = xp.log(n_train) - (centres.log_n if log_n_centre is None else log_n_centre)
    if KAPPA_GAMMA in theta:
        log_gamma = log_gamma + theta[KAPPA_GAMMA] * dn
    gamma = xp.exp(log_gamma)
    pivot = centres.log_err_pivot if log_err_pivot is None else log_err_pivot
    log_eps_up = log_plateau(theta, eps0, pivot, xp=xp)
    # the power law eps = eps_up (p/m*)^gamma reaches exp(pivot) at m* = exp(log_p_centre)
    log_p = (theta["log_p_centre"] - (log_eps_up - pivot) / gamma + phi * centres.log_depth
             + psi * centres.log_width)
    if KAPPA in theta:
        log_p = log_p + theta[KAPPA] * dn
    if CURVATURE[0] in theta and depth is not None:
        log_p = log_p - curvature(theta, centres, depth, width, xp=xp)
    return PruneLaw(gamma=gamma, p_prime=xp.exp(log_p), eps_up=xp.exp(log_eps_up), phi=phi,
                    psi=psi)


def dense_law(theta, centres: Centres, eps0, xp=np, depth=None, log_depth_centre=None,
              log_n_centre=None, log_params_centre=None) -> DenseLaw:
    """The dense-error envelope of ``theta``'s draws. ``log_dense`` and the local slopes are
    the envelope's at ``(log_n_centre, log_params_centre)``: a fit's own groups' mean log
    n_train and log weight count (:func:`dense_centres`), by default the grid's (a pair never
    fitted, or a fit stored before groups had their own). With :data:`ZETA` in ``theta`` and
    ``depth`` given, a network's size in the envelope is its weight count times
    ``(depth / centre)^zeta`` (``log_depth_centre``: the group's mean log depth, by default the
    grid's), folded into ``log_b``, which then varies with depth: at equal weights, a deeper
    network errs less (``zeta > 0``) or more. Without them it depends on no row of a query."""
    za, zb, level = theta["logit_share_a"], theta["logit_share_b"], theta["log_dense"]
    norm = xp.logaddexp(0.0, xp.logaddexp(za, zb))  # log(1 + e^za + e^zb)
    log_wa, log_wb = za - norm, zb - norm
    alpha = xp.exp(theta["log_slope_n"] - log_wa)
    beta = xp.exp(theta["log_slope_m"] - log_wb)
    # log a = level + log w_a + alpha <log n>: a term the group cannot inform (one n_train) may
    # have an alpha that puts a beyond a float's range, but a n^-alpha stays finite near the grid
    log_b = level + log_wb + beta * (centres.log_params if log_params_centre is None
                                     else log_params_centre)
    if ZETA in theta and depth is not None:
        centre = centres.log_depth if log_depth_centre is None else log_depth_centre
        log_b = log_b - beta * theta[ZETA] * (xp.log(depth) - centre)
    n_centre = centres.log_n if log_n_centre is None else log_n_centre
    return DenseLaw(log_a=level + log_wa + alpha * n_centre, alpha=alpha,
                    log_b=log_b, beta=beta, log_c_inf=level - norm, eta=eps0)


@dataclass(frozen=True)
class Layout:
    """A validated grid indexed for the model: one row per point, config and run."""

    points: pd.DataFrame  # the grid, with integer columns group_idx, config_idx, run_idx
    groups: pd.DataFrame  # arch, task, arch_idx, task_idx, eps0, n_test, group_anchors' columns,
    # log_n_centre (the mean log n_train of the group's configurations)
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
    pts["group_idx"] = pts.groupby(GROUP_KEY, sort=True).ngroup()
    pts["config_idx"] = pts.groupby(CONFIG_KEY, sort=True).ngroup()
    pts["run_idx"] = pts.groupby(run_key(pts), sort=True).ngroup()
    groups = (pts.groupby(GROUP_KEY, sort=True)
              .agg(eps0=("eps0", "first"), n_test=("n_test", "median")).reset_index())
    groups["arch_idx"] = groups["arch"].map({a: i for i, a in enumerate(archs)})
    groups["task_idx"] = groups["task"].map({t: i for i, t in enumerate(tasks)})
    anchors = group_anchors(pts)
    groups = groups.merge(anchors, on=GROUP_KEY, validate="one_to_one")
    configs = (pts.groupby("config_idx", sort=True)
               .agg(**{c: (c, "first") for c in CONFIG_KEY + ["params_total",
                                                              "params_prunable", "group_idx"]})
               .reset_index(drop=True))
    for axis, name in (("n_train", "log_n_centre"), ("depth", "log_depth_centre"),
                       ("params_total", "log_params_centre")):
        groups[name] = (np.log(configs[axis].astype(float))
                        .groupby(configs["group_idx"]).mean().to_numpy())
    runs = (pts.groupby("run_idx", sort=True)
            .agg(config_idx=("config_idx", "first"), seed=("seed", "first"),
                 group_idx=("group_idx", "first")).reset_index(drop=True))
    return Layout(pts, groups, configs, runs, archs, tasks, Centres.of(configs, anchors))


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
