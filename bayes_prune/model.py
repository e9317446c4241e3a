"""The hierarchical Bayesian model of an error grid (PyMC). Builds the model; never samples.

For every (arch, task) group ``g`` the coefficient vector ``theta_g`` (see
:mod:`bayes_prune.coords`) is pooled across architectures and tasks::

    theta_g = mu + u[arch(g)] + v[task(g)] + e_g

with ``mu ~ Normal(prior mean, prior sd)``, ``u``, ``v``, ``e`` normal with informative
constant spreads (a grid holds a handful of groups: too few to learn them). Every term being
normal, the groups' coefficients are jointly normal, with the covariance
:func:`~bayes_prune.coords.pooling_cov`; the model samples ``theta`` directly under that
prior, centred where the data pin ``theta_g`` down far more tightly than the spreads (a
non-centred ``mu + s z`` form leaves the sampler a thin ridge across the ``z`` there), and
non-centred (``theta = mean + chol z``) for the dense law's shares (:data:`NONCENTRED`), which
the data barely inform, so that their posterior is close to the correlated prior. A pair never
trained is predicted from the fitted groups by the normal conditional
(:meth:`bayes_prune.posterior.Posterior.coefficients`), with a band widened by ``e``.
Below the groups:

- configuration ``c``: a latent dense error ``log eps_np_c ~ Normal(log dense_law_g(params_c,
  n_c), tau_g)``; with ``dense_depth`` (opt-in) the envelope sizes the network by
  ``params_c (l_c / exp<log l>_g)^zeta_g``, ``zeta_g`` pooled like every coefficient (prior
  centred at 0, the paper's law, sd 0.5 and arch and task spreads 0.5 each). The weight count
  alone does not order networks of different depths: a 2-layer MNIST-1D CNN of width 32 errs
  half as much as the 1-layer one with more weights (its linear head shrinks with each pooling
  stage), and an envelope in weights alone, fitted across depths, extrapolated the deeper
  networks' width too timidly (the settling split's MNIST-1D CNN, its one too-narrow group:
  90 % coverage 74.7 -> 86.5 %, lpd summed over the four groups 5.91 -> 6.21). Not the
  default: carried two depths beyond the reference grids, the MNIST-1D CNN's depth trend
  reverses (its depth-5 networks err more than its depth-4 ones) and the band holds 77 % of
  the far set, against 94 % without it (experiments/README, "The dense law's size");
- run ``t`` (configuration x seed): its measured dense error (round 0) ``y_t ~ Normal(log
  eps_np_c, sqrt(sigma_seed_g^2 + (1 - e_t) / (n_test e_t)))``: the run's luck plus the
  binomial noise of its test set (``runs_mode`` ``"auto"`` and ``"measured"``,
  :func:`~bayes_prune.run_points.measured_runs`). By default (``"latent"``) every run's
  dense error is a latent ``~ Normal(log eps_np_c, sigma_seed_g)`` instead, informed by its
  dense point as a point of the trajectory below, and so by the trajectory's first rounds too;
- pruned point ``i`` of run ``t``: ``log err_i ~ Normal(log law_g(d_i, l, w, e_t),
  sqrt(sigma_g^2 + (1 - eps_i) / (n_test_i eps_i)))``, the law from the run's *own* dense
  error ``e_t`` (every point of a trajectory shares its run's luck, as the paper's fit has
  it), with relative noise plus the binomial noise of a finite test set at the predicted
  error ``eps_i`` (or a Student-t with ``nu`` = 4 for ``likelihood="student"``);
- with ``invariant_scatter``, configuration ``c`` also has its own offset of the log invariant,
  ``log m*_c + delta_c``, ``delta_c ~ Normal(0, tau_m_g)`` (centred): its whole curve sits
  a little further along density than the law's, in all of its runs. Without it, a
  configuration's misfit of the law counts as 30 independent point misses per run (within a
  run the residuals' lag-1 autocorrelation is 0.7, and most of a run's mean miss is its
  configuration's: experiments/README, "A trajectory is not 30 independent facts"), so the
  coefficients' bands are narrower than the data justify and a new configuration's band
  carries no such scatter. Opt-in: it evens the in-sample bands a little, but with a shift of
  its own per configuration the depth and width exponents rest on the configurations' means
  and move, and the CNN groups extrapolated worse on the settling split (experiments/README).

The configuration latents enter only through the runs' dense points, all normal, so they are
integrated out exactly (:func:`_marginal_dense`): the sampler sees the coefficients and the
noise scales only. A centred latent per configuration made a funnel with ``tau`` wherever the
configurations sit on the dense law closer than their seeds scatter (synthetic grids do
exactly that). The run latents are 468 of the reference grids' 536 sampled dimensions;
conditioning the runs on their dense points instead (``runs_mode="auto"``) samples 68 and fits
2-3x faster, but predicted held-out Fashion-MNIST configurations worse (README, "Fit speed"),
so it is opt-in. The
configuration latents' posterior is Gaussian given a draw, and :func:`config_dense_draws`
draws it after sampling, for queries of trained configurations.

The law is :mod:`bayes_prune.law`, evaluated with ``xp = pytensor.tensor``.

Priors (on the centred coefficients; :class:`~bayes_prune.priors.Priors`, overridable):
``gamma`` around 2 (slopes 0.7-5.4); the pivot density (where the curve passes the middle of
the rise its grid shows) around where the grid's runs pass it, within a factor e^1.5; ``phi``
around 0.5 and ``psi`` around 1 (sd 0.75); ``eps_up`` 88 % of the way from the pivot error to
random guessing; the dense envelope at the centre around the grid's own median dense error (a
factor e either way), its local slopes in n and in the weight count near 0.2 and 0.15, its
three terms in equal shares a priori (``logit_share`` sd 0.5). The two data-centred means
(:meth:`~bayes_prune.priors.Priors.follow`) let a grid of CIFAR-10 ResNets at 6 % dense error
and one of small MLPs at 15 % start from priors of the same shape around their own data.

What a grid cannot inform rests on its prior, in a form that cannot overflow: every axis
enters centred on the grid's mean (``phi (log l - <log l>)``...; the dense law on each
group's own, ``alpha (log n - <log n>_g)``, :func:`~bayes_prune.coords.dense_centres`), so a
grid with one depth, one width or one n_train leaves ``phi``, ``psi`` or the envelope's
n-term exactly at their prior, and a grid of a single configuration is Eq. 1 for that network
with its dense error's level. The dense law's coefficients are carried as logs
(:class:`~bayes_prune.law.DenseLaw`): ``a`` of a term the grid never varied may be far
beyond a float's range while ``a n^-alpha`` at the grid is finite. A run without a dense point
(round 0) has its dense error as a latent, informed by its configuration's dense law and its
own pruned points. :func:`prior_predictive` checks, per group, that the
prior's band reaches the measured errors; ``fit`` stores and prints it, with what the data
identified (:meth:`bayes_prune.posterior.Posterior.identification`).
"""

from __future__ import annotations

import numpy as np
import pymc as pm
import pytensor.tensor as pt

from .coords import (
    COEFS,
    CURVATURE,
    KAPPA,
    KAPPA_GAMMA,
    ZETA,
    Layout,
    dense_centres,
    dense_law,
    pooling_cov,
    prune_law,
)
from .errors import UserError
from .law import (
    STUDENT_NU,
    PruneLaw,
    binomial_log_var,
    log_dense_error,
    log_eq1,
    log_error,
    log_invariant,
)
from .lsq import observed_errors
from .priors import Priors
from .run_points import (
    RUNS_MODES,
    ar1_loglik,
    dense_point_var,
    measured_runs,
    previous_point,
    run_dense_points,
    run_start,
)

__all__ = ["Priors", "build_model"]

LIKELIHOODS = ("normal", "student")
# The dense law's shares set its curvature, which a grid of 3 dataset sizes barely informs:
# their posterior stays close to the pooling prior, which correlates the groups, a geometry a
# diagonal mass matrix follows only slowly (R-hat 1.017 centred). Sampled as theta = mean +
# chol z, they mix like independent normals.
NONCENTRED = ("logit_share_a", "logit_share_b")


def coef_names(p_depends_on_n: bool = False, gamma_depends_on_n: bool = False,
               curved: bool = False, dense_depth: bool = False) -> list[str]:
    """The coefficients of the model with the given variants (see :mod:`bayes_prune.coords`)."""
    return (list(COEFS) + ([KAPPA] if p_depends_on_n else [])
            + ([KAPPA_GAMMA] if gamma_depends_on_n else []) + (list(CURVATURE) if curved else [])
            + ([ZETA] if dense_depth else []))


def build_model(lay: Layout, priors: Priors | None = None, likelihood: str = "normal",
                p_depends_on_n: bool = True, observed: bool = True,
                runs_mode: str = "latent", gamma_depends_on_n: bool = True,
                curved: bool = True, ar1: bool = False,
                invariant_scatter: bool = False, dense_depth: bool = False) -> pm.Model:
    """The PyMC model of ``lay`` (see the module docstring). With ``observed=False`` the same
    graph has no likelihood terms attached to data (prior predictive use). ``runs_mode``
    (:func:`~bayes_prune.run_points.measured_runs`) ``"latent"`` samples every run's dense
    error; ``"auto"`` conditions every run that has a dense point on it and samples the dense
    error of the others;
    ``"measured"`` conditions on it and refuses a run without one.
    ``p_depends_on_n``, ``gamma_depends_on_n`` and ``curved`` add the variants' coefficients
    (:mod:`bayes_prune.coords`); on by default, as in :func:`bayes_prune.fit.fit`, all three
    ``False`` for the paper's law; ``dense_depth`` (opt-in) adds ``zeta``. ``ar1`` correlates
    the residuals of a run's successive rounds (:func:`~bayes_prune.run_points.ar1_loglik`;
    normal likelihood only).
    ``invariant_scatter`` gives every configuration its own offset of the log invariant,
    ``log_m_config ~ Normal(0, tau_m_g)`` shared by all its runs' points."""
    if ar1 and likelihood != "normal":
        raise UserError("the AR(1) residuals need the normal likelihood (--likelihood normal)")
    if runs_mode not in RUNS_MODES:
        raise UserError(f"unknown runs mode {runs_mode!r}; choose {', '.join(RUNS_MODES)}")
    if likelihood not in LIKELIHOODS:
        raise UserError(f"unknown likelihood {likelihood!r}; choose {', '.join(LIKELIHOODS)}")
    priors = priors or Priors()
    names = coef_names(p_depends_on_n, gamma_depends_on_n, curved, dense_depth)
    g, cfg, runs, pts = lay.groups, lay.configs, lay.runs, lay.points
    weak = np.array([n in NONCENTRED for n in names])  # every coefficient set has both kinds
    coords = {"coef": names, "arch": lay.archs, "task": lay.tasks,
              "group": [f"{a}/{t}" for a, t in zip(g["arch"], g["task"], strict=True)],
              "config": np.arange(len(cfg)), "run": np.arange(len(runs)),
              "point": np.arange(len(pts)),
              "coef_centred": [n for n, w in zip(names, weak, strict=True) if not w],
              "coef_noncentred": [n for n, w in zip(names, weak, strict=True) if w]}
    measured = measured_runs(lay, runs_mode)
    # a measured run's dense point conditions it; every other point is fitted
    use = np.flatnonzero((pts["round"].to_numpy() != 0)
                         | ~measured[pts["run_idx"].to_numpy()])
    coords["point"] = use
    coords["run_latent"] = np.flatnonzero(~measured)
    y, n_dense = run_dense_points(lay)
    with pm.Model(coords=coords) as model:
        mean_k = np.array([priors.mu["mean"][n] for n in names])
        cov = pooling_cov(g["arch"], g["task"], *(np.array(v) for v in priors.scales(names)))
        chol, rows = np.linalg.cholesky(cov), [None] * len(names)
        # centred: the data pin these down far more tightly than the prior
        c = pm.MvNormal("theta_kg", mu=np.repeat(mean_k[~weak, None], len(g), axis=1),
                        chol=chol[~weak], dims=("coef_centred", "group"))
        # non-centred: the data leave these close to their correlated prior
        z = pm.Normal("theta_z", 0.0, 1.0, dims=("coef_noncentred", "group"))
        nc = mean_k[weak, None] + (chol[weak] * z[:, None, :]).sum(axis=-1)
        for part, ks in ((c, np.flatnonzero(~weak)), (nc, np.flatnonzero(weak))):
            for j, k in enumerate(ks):
                rows[k] = part[j]
        theta = pm.Deterministic("theta", pt.stack(rows).T, dims=("group", "coef"))
        sigma, sigma_seed, tau = (
            pm.LogNormal(v, np.log(getattr(priors, v)), priors.noise_sd, dims="group")
            for v in ("sigma", "sigma_seed", "tau"))

        # configurations (integrated out) and their runs' measured dense errors
        rg = runs["group_idx"].to_numpy()
        law_c, tau_c = _dense_law_c(lay, theta, names), tau[cfg["group_idx"].to_numpy()]
        # a measured run's dense error is its dense point (whose binomial noise joins the
        # seed spread); another run's is a latent; its configuration's latent integrated out
        noise = dense_point_var(y, n_dense, measured)
        if measured.all():
            log_np_t = y
        else:
            free = pm.Flat("log_eps_np_run", dims="run_latent",
                           initval=run_start(lay, y)[~measured])
            log_np_t = free if not measured.any() else pt.set_subtensor(
                pt.as_tensor(np.where(measured, y, 0.0))[np.flatnonzero(~measured)], free)
        pm.Potential("run_prior" if not measured.all() else "dense_points", _marginal_dense(
            log_np_t, law_c, runs["config_idx"].to_numpy(), len(cfg),
            sigma_seed[rg] ** 2 + noise, tau_c))
        # points: the law depends on a point only through its density and its run's dense
        # error, so its coefficients are evaluated once per configuration, then stacked per
        # run and gathered once per point (the gradient scatters one (points, 6) array instead
        # of one array per coefficient: 1.15 instead of 3.43 ms per log density + gradient on
        # the reference grids, JAX, one thread)
        p = pts.iloc[use]
        pg = p["group_idx"].to_numpy()
        prune_c = _prune_law_c(lay, theta, names)
        per_c = pt.stack([  # log m* - log d, i.e. the invariant at density 1
            log_invariant(1.0, cfg["depth"].to_numpy(float), cfg["width"].to_numpy(float),
                          prune_c.phi, prune_c.psi, xp=pt),
            pt.log(prune_c.eps_up), prune_c.gamma, pt.log(prune_c.p_prime),
            sigma[cfg["group_idx"].to_numpy()] ** 2], axis=1)
        if invariant_scatter:  # a configuration's own shift of the curve along density
            tau_m = pm.LogNormal("tau_m", np.log(priors.tau_m), priors.noise_sd, dims="group")
            # centred: 20-30 points a run, 2-3 runs a configuration pin each offset down
            # far more tightly than tau_m (non-centred, the Fashion MLP's chains diverged)
            off = pm.Normal("log_m_config", 0.0, tau_m[cfg["group_idx"].to_numpy()],
                            dims="config")
            per_c = pt.set_subtensor(per_c[:, 0], per_c[:, 0] + off)
        per_t = pt.concatenate([per_c[runs["config_idx"].to_numpy()], log_np_t[:, None]],
                               axis=1)[p["run_idx"].to_numpy()]
        log_m_shift, log_eps_up, gamma, log_p, sigma2, log_np = (per_t[:, k] for k in range(6))
        mean = log_eq1(np.log(p["density"].to_numpy()) + log_m_shift, log_np, log_eps_up, gamma,
                       log_p, xp=pt)
        mean = pm.Deterministic("log_err_mean", mean, dims="point") if not observed else mean
        eps = pt.clip(pt.exp(mean), 1e-6, 1 - 1e-6)
        sd = pt.sqrt(sigma2 + binomial_log_var(eps, p["n_test"].to_numpy(float)))
        obs = np.log(observed_errors(p)) if observed else None
        if ar1 and observed:
            rho = pm.Beta("rho", *priors.rho, dims="group")
            prev = previous_point(p)
            pm.Potential("log_err", ar1_loglik(obs, mean, sd, rho[pg], prev))
        elif likelihood == "normal":
            pm.Normal("log_err", mean, sd, observed=obs, dims="point")
        else:
            pm.StudentT("log_err", nu=STUDENT_NU, mu=mean, sigma=sd, observed=obs,
                        dims="point")
    return model


def _theta_c(lay: Layout, theta, names) -> dict:
    """Each coefficient of ``theta`` (``(..., groups, coefs)``) at every configuration."""
    cg = lay.configs["group_idx"].to_numpy()
    return {n: theta[..., cg, i] for i, n in enumerate(names)}


def _prune_law_c(lay: Layout, theta, names) -> PruneLaw:
    """The joint law's coefficients of every configuration (arrays over ``lay.configs``),
    ``theta`` being ``(groups, coefs)``: with the variants they vary with n_train, depth and
    width, never with a point's density."""
    cfg, g = lay.configs, lay.groups
    cg = cfg["group_idx"].to_numpy()
    return prune_law(_theta_c(lay, theta, names), lay.centres, g["eps0"].to_numpy()[cg],
                     n_train=cfg["n_train"].to_numpy(float), depth=cfg["depth"].to_numpy(float),
                     width=cfg["width"].to_numpy(float),
                     log_err_pivot=g["log_err_pivot"].to_numpy()[cg],
                     log_n_centre=g["log_n_centre"].to_numpy()[cg], xp=pt)


def _dense_law_c(lay: Layout, theta, names, xp=pt):
    """Log dense law of every configuration, ``theta`` being ``(groups, coefs)`` (or with a
    leading draws axis for numpy: then the result is ``(draws, configs)``)."""
    cfg, g = lay.configs, lay.groups
    cg = cfg["group_idx"].to_numpy()
    eps0, n = g["eps0"].to_numpy()[cg], cfg["n_train"].to_numpy(float)
    dense = dense_law(_theta_c(lay, theta, names), lay.centres, eps0, xp=xp,
                      depth=cfg["depth"].to_numpy(float),
                      log_depth_centre=g["log_depth_centre"].to_numpy()[cg],
                      **dense_centres(g, cg))
    return log_dense_error(cfg["params_total"].to_numpy(float), n, dense, eps0, xp=xp)


def _marginal_dense(y, law_c, run_config, n_configs, var_t, tau_c):
    """Sum over configurations of ``log N(y_runs(c) | law_c 1, diag(var_t) + tau_c^2 11')``:
    the runs' dense points with their configuration's latent integrated out (closed form for
    a diagonal plus rank-one covariance). The per-configuration sums are one scatter-add of a
    (runs, 4) array."""
    r = y - law_c[run_config]
    per_run = pt.stack([1 / var_t, r / var_t, r**2 / var_t, pt.log(var_t)], axis=-1)
    sums = pt.inc_subtensor(pt.zeros((n_configs, 4))[run_config], per_run)
    s0, s1, s2, logdet = (sums[:, k] for k in range(4))
    t2 = tau_c**2
    count = np.bincount(run_config, minlength=n_configs)
    quad = s2 - t2 * s1**2 / (1 + t2 * s0)
    return -0.5 * pt.sum(quad + logdet + pt.log1p(t2 * s0) + count * np.log(2 * np.pi))


def config_dense_draws(lay: Layout, theta, sigma_seed, tau, names, rng,
                       run_draws=None, measured=None) -> np.ndarray:
    """Posterior draws ``(draws, configs)`` of every configuration's latent log dense error,
    given the draws of ``theta`` ``(draws, groups, coefs)``, ``sigma_seed`` and ``tau``
    ``(draws, groups)``: per draw the normal conditional (prior from the dense law, data from
    the configuration's runs: the measured dense points of the runs in ``measured``
    (:func:`~bayes_prune.run_points.measured_runs`), the latent dense errors ``run_draws``
    ``(draws, latent runs)`` of the others). ``measured`` defaults to every run without
    ``run_draws``, none with them."""
    runs, cfg = lay.runs, lay.configs
    if measured is None:
        measured = np.full(len(runs), run_draws is None)
    y, n_dense = run_dense_points(lay, require=bool(measured.all()))
    var_t = sigma_seed[:, runs["group_idx"].to_numpy()] ** 2
    var_t = var_t + dense_point_var(y, n_dense, measured)
    if not measured.all():
        full = np.broadcast_to(np.where(measured, y, 0.0), var_t.shape).copy()
        full[:, ~measured] = run_draws
        y = full
    m = np.zeros((len(cfg), len(runs)))
    m[runs["config_idx"].to_numpy(), np.arange(len(runs))] = 1.0
    prec = 1 / tau[:, cfg["group_idx"].to_numpy()] ** 2
    law = _dense_law_c(lay, theta, names, xp=np)
    post_prec = prec + (1 / var_t) @ m.T
    mean = (law * prec + (y / var_t) @ m.T) / post_prec
    return mean + rng.standard_normal(mean.shape) / np.sqrt(post_prec)


def prior_predictive(lay: Layout, priors: Priors, draws: int = 1000, seed: int = 0) -> dict:
    """The prior predictive check, per group (numpy, seconds): draw the coefficients from the
    prior (each group's marginal under the pooling), put the law through the grid's points
    with each run's measured dense error (or its start value,
    :func:`~bayes_prune.run_points.run_start`), add the prior median point noise, and report
    ``inside_unit_interval`` (the fraction of predicted errors in (0, 1)), ``coverage_90``
    (the fraction of measured errors inside the prior's central 90 % band: a prior that
    cannot reach the data shows here) and the 5/50/95 % quantiles of the pivot density
    (``pivot_density``, where the prior curves pass the group's pivot error) beside the
    grid's density range."""
    names = list(COEFS)
    rng = np.random.default_rng(seed)
    sd = np.sqrt(np.stack([pooling_cov(lay.groups["arch"], lay.groups["task"],
                                       *(np.array(v) for v in priors.scales(names)))[:, g, g]
                           for g in range(len(lay.groups))]))  # (groups, K)
    mean = np.array([priors.mu["mean"][n] for n in names])
    y, _ = run_dense_points(lay)
    pts = lay.points
    log_np = run_start(lay, y)[pts["run_idx"].to_numpy()]
    out = {}
    for g, row in lay.groups.iterrows():
        p = pts[pts["group_idx"] == g]
        z = mean + sd[g] * rng.standard_normal((draws, len(names)))
        theta = {n: z[:, i, None] for i, n in enumerate(names)}
        prune = prune_law(theta, lay.centres, row["eps0"], log_err_pivot=row["log_err_pivot"])
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            mu = log_error(p["density"].to_numpy(), p["depth"].to_numpy(float),
                           p["width"].to_numpy(float), np.exp(log_np[p.index]), prune)
            sim = mu + priors.sigma * rng.standard_normal(mu.shape)
        lo, hi = np.nanquantile(sim, [0.05, 0.95], axis=0)
        obs = np.log(observed_errors(p))
        out[f"{row['arch']}/{row['task']}"] = {
            "inside_unit_interval": float(np.mean(np.isfinite(mu) & (mu < 0))),
            "coverage_90": float(np.mean((obs >= lo) & (obs <= hi))),
            "pivot_density": np.exp(np.quantile(z[:, names.index("log_p_centre")],
                                                [0.05, 0.5, 0.95])).tolist(),
            "grid_density": [float(p["density"].min()), float(p["density"].max())]}
    return out
