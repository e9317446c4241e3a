"""Sampling the hierarchical model: nutpie when installed, PyMC's NUTS otherwise.

:func:`fit` checks the sampler's diagnostics (R-hat, bulk and tail ESS, divergences), stores
them with the posterior and warns loudly when they fail; the result is a
:class:`~bayes_prune.posterior.Posterior` that saves as ArviZ InferenceData in NetCDF, with the
grid's provenance and the model's settings in the posterior group's ``bayes_prune`` attribute.
"""

from __future__ import annotations

import json
import os
import sys
import time
import warnings

import arviz as az
import numpy as np
import pandas as pd
import xarray as xr

# pytensor's C backend warns at import when it finds no BLAS; nutpie samples through JAX or numba,
# and this model has no matrix products worth a BLAS: the warning only alarms users.
warnings.filterwarnings("ignore", message="PyTensor could not link to a BLAS")

from .coords import layout  # noqa: E402
from .diagnostics import _KEEP, THRESHOLDS, diagnose, kept, worst_text  # noqa: E402
from .discrepancy import extrapolation_discrepancy  # noqa: E402
from .errors import UserError  # noqa: E402
from .grid import grid_hash, validate  # noqa: E402
from .model import (  # noqa: E402
    Priors,
    build_model,
    coef_names,
    config_dense_draws,
    measured_runs,
    prior_predictive,
)
from .posterior import FORMAT, Posterior, _flatten  # noqa: E402
from .sampler import (  # noqa: E402
    ESCALATED_ACCEPT,
    ESCALATION,
    Target,
    backend_of,
    compile_model,
    defaults_for,
    precision_of,
    sample,
)
from .stacking import drop_stray_modes, stacked_text  # noqa: E402

__all__ = ["fit", "diagnose", "THRESHOLDS"]

SAMPLERS = ("auto", "nutpie", "pymc")



def _sampler(name: str) -> str:
    if name not in SAMPLERS:
        raise UserError(f"unknown sampler {name!r}; choose one of {', '.join(SAMPLERS)}")
    if name == "pymc":
        return "pymc"
    try:
        import nutpie  # noqa: F401
        return "nutpie"
    except ImportError:
        if name == "nutpie":
            raise UserError("--sampler nutpie: nutpie is not installed (pip install nutpie)"
                             ) from None
        return "pymc"


def fit(grid: pd.DataFrame, sampler: str = "auto", draws: int | None = None,
        tune: int | None = None,
        chains: int = 4, seed: int = 0, cores: int | None = None, likelihood: str = "normal",
        p_depends_on_n: bool = True, priors: Priors | None = None,
        log_likelihood: bool = False, progress: bool = True, source: str = "<grid>",
        low_rank: bool = True, runs_mode: str = "latent",
        target_accept: float | None = None, gamma_depends_on_n: bool = True,
        curved: bool = True, discrepancy: bool = True, ar1: bool = False,
        backend: str = "auto",
        precision: str = "auto", device: str = "cpu",
        ess_target: float | None = Target.ess, method: str = "nuts",
        borrow_drift: bool = True, invariant_scatter: bool = False,
        dense_depth: bool = True) -> Posterior:
    """Fit the hierarchical model to an error grid and return its posterior (the grid is
    validated first, :func:`bayes_prune.grid.validate`: a bad frame is a one-line error naming
    ``source``, the row and the column).

    With nutpie (:mod:`bayes_prune.sampler`), ``backend`` ``auto`` is JAX when installed, else
    numba; ``precision`` float32 (JAX only) is opt-in; ``device="cuda"`` runs JAX on a GPU;
    ``draws``, ``tune`` and ``target_accept`` default to
    :func:`bayes_prune.sampler.defaults_for` the grid's size (2,000, 300 and 0.85; for a
    grid under 200 points 2,000, 2,000 and 0.99). A fit at the default acceptance 0.85 that
    diverges samples again at 0.95, and if it still diverges at 0.99 with at least 2,000
    tuning steps (:data:`bayes_prune.sampler.ESCALATION`; the acceptance it started from is
    stored as ``escalated_from``).
    ``draws`` is the most draws per chain: with ``ess_target`` the chains stop as soon as
    every variable's bulk and tail ESS reach it and R-hat is at most 1.01 (``None``: exactly
    ``draws``). ``cores``
    defaults to ``chains`` with nutpie (all chains at once, so that they can stop together)
    and to the machine's CPU count with PyMC (which would otherwise count one core here and
    run the chains one after another). ``method`` ``advi`` or ``pathfinder`` replaces NUTS by
    an approximation (:mod:`bayes_prune.variational`): ``draws`` draws in one chain, stored with
    the method and its Pareto k instead of R-hat and ESS. ``log_likelihood=True`` stores the
    pointwise log likelihood for LOO comparisons (``arviz.loo``, ``arviz.compare``).
    ``runs_mode`` ``"latent"`` (default) samples every run's dense error; ``"auto"``
    conditions a run's law on its measured dense error where the run has a dense point, as the
    paper's fit does, with the point's binomial noise in the seed spread, and samples it where
    the run has none (:func:`bayes_prune.run_points.measured_runs`): 68 sampled dimensions
    instead of 536 on the reference grids and a 2-3x faster fit, but worse held-out bands for
    the Fashion-MNIST groups (README, "Fit speed"); ``"measured"`` refuses a run without a
    dense point.
    ``target_accept`` 0.85 halves the steps per draw of 0.95 on the reference grids, but
    diverged on a smaller grid (:mod:`bayes_prune.sampler`), hence the escalation;
    ``low_rank`` (default) uses nutpie's low-rank mass matrix adaptation, which follows the
    correlated coefficients of a grid that shows only part of the curve (a CIFAR-10 ResNet
    pruned to 2 %: max R-hat 1.004 and 0 divergences against 1.023 with a diagonal one).
    ``p_depends_on_n``, ``gamma_depends_on_n`` and ``curved`` are the law's variants
    (:mod:`bayes_prune.coords`), on by default: they predict configurations beyond a grid
    better than the paper's law (experiments/README.md); they and ``dense_depth`` all
    ``False`` is the paper's law. ``dense_depth`` (default) sizes a network in the dense
    envelope by its weights times a power of its depth (:data:`bayes_prune.coords.ZETA`):
    better on both settling splits, and a user's fresh small CNN grid's band covers 92 % of its
    larger networks against 74 % without it (experiments/README.md, "The dense law's size"
    and "The envelope's depth term, the default").
    ``discrepancy`` measures how far the law strays when it extrapolates in size, by nested
    least-squares splits of the grid (:func:`bayes_prune.discrepancy.extrapolation_discrepancy`,
    seconds), and stores it: predictions for configurations larger than the grid widen by it.
    ``borrow_drift`` (default) pools that drift with the shipped reference groups' own
    measurements (:mod:`bayes_prune.discrepancy`): those the grid does not hold, and those it
    holds but stops below the reference grids' sizes, beside its own. A one-group grid's bands
    beyond it then carry the reference groups' drift; a grid of the whole reference grids
    borrows nothing.
    """
    chosen = defaults_for(len(grid))
    draws = chosen["draws"] if draws is None else draws
    tune = chosen["tune"] if tune is None else tune
    # a default acceptance below ESCALATED_ACCEPT is raised to it if the chains diverge
    escalate = target_accept is None and chosen["target_accept"] < ESCALATED_ACCEPT
    target_accept = chosen["target_accept"] if target_accept is None else target_accept
    grid = validate(grid, source)  # a frame from Python is checked like a file (idempotent)
    lay = layout(grid)
    priors = priors or Priors().follow(lay)
    variants = {"p_depends_on_n": p_depends_on_n, "gamma_depends_on_n": gamma_depends_on_n,
                "curved": curved, "dense_depth": dense_depth}
    if ar1 and log_likelihood:
        raise UserError("--loo needs independent points: the AR(1) residuals (--ar1) have no "
                        "pointwise log likelihood")
    model = build_model(lay, priors, likelihood=likelihood, runs_mode=runs_mode, ar1=ar1,
                        invariant_scatter=invariant_scatter, **variants)
    idata, run, pareto_k, which, backend, precision, chains, target_accept, escalated_from, \
        seconds, stacked = _sample(model, sampler, method, draws, tune, chains, seed, cores,
                                   progress, low_rank, target_accept, escalate, backend,
                                   precision, device, ess_target, stack=not ar1)
    post = idata.posterior
    names = coef_names(**variants)
    chains_, draws_ = post.sizes["chain"], post.sizes["draw"]
    flat = _flatten(post[[v for v in ("theta", "sigma_seed", "tau", "log_eps_np_run")
                          if v in post]])
    cfg = config_dense_draws(lay, flat["theta"], flat["sigma_seed"], flat["tau"], names,
                             np.random.default_rng(seed), flat.get("log_eps_np_run"),
                             measured=measured_runs(lay, runs_mode))
    post["log_eps_np_config"] = (("chain", "draw", "config"),
                                 cfg.reshape(chains_, draws_, -1))
    if log_likelihood:
        import pymc as pm

        # the run latents start at the measured dense errors (initval), which PyMC's graph
        # rewriting for the pointwise log likelihood refuses; sampling is done, so drop them
        for rv in model.free_RVs:
            model.set_initval(rv, None)
        pm.compute_log_likelihood(idata, model=model, progressbar=False)
    stats = idata.get("sample_stats")
    if method != "nuts":  # an approximation has no divergences; its Pareto k is in the metadata
        post = idata.posterior
        stats = xr.Dataset({"diverging": (("chain", "draw"), np.zeros(
            (post.sizes["chain"], post.sizes["draw"]), dtype=bool))})
    stats = {} if stats is None else {"sample_stats": stats[["diverging"]]
                                      if "diverging" in stats else stats}
    keep = az.InferenceData(posterior=kept(idata.posterior),
                            **stats, **({"log_likelihood": idata.log_likelihood}
                                        if log_likelihood else {}))
    diagnostics = diagnose(keep) if method == "nuts" else \
        {"pareto_k": pareto_k, "ok": bool(pareto_k <= 0.7)}
    meta = {
        "format": FORMAT,
        "settings": {"method": method, "sampler": which, "backend": backend,
                     "precision": precision,
                     "device": device, "ess_target": ess_target, "max_draws": draws,
                     "stopped": run["stopped"], "draws": run["draws"],
                     "tune": run.get("tune", tune), "chains": chains,
                     "seed": seed, "target_accept": target_accept,
                     "escalated_from": escalated_from, "likelihood": likelihood,
                     **variants, "discrepancy": discrepancy, "borrow_drift": borrow_drift,
                     "ar1": ar1, "runs_mode": runs_mode,
                     "invariant_scatter": invariant_scatter,
                     "coefs": names, "dense_centre": "group",
                     "seconds": round(seconds, 2), "stacked": stacked,
                     "restarts": run.get("restarts", [])},
        "priors": priors.to_dict(),
        "diagnostics": diagnostics,
        "provenance": {"source": source, "points": int(len(grid)),
                       "grid_sha256": grid_hash(grid),
                       "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())},
        "archs": lay.archs, "tasks": lay.tasks, "centres": lay.centres.__dict__,
        "groups": lay.groups.to_dict(orient="list"),
        "configs": lay.configs.to_dict(orient="list"),
        "discrepancy": extrapolation_discrepancy(grid, progress=progress, borrow=borrow_drift)
        if discrepancy else None,
        "prior_predictive": prior_predictive(lay, priors, seed=seed),
    }
    keep.posterior.attrs["bayes_prune"] = json.dumps(meta, default=_jsonable)
    if method != "nuts":
        print(f"APPROXIMATE posterior ({method}): Pareto k {pareto_k:.2f} "
              f"({'<= 0.7' if diagnostics['ok'] else '> 0.7: do not trust its bands'})",
              file=sys.stderr)
    if stacked and stacked["keep"]:
        print("NOTE: " + stacked_text(stacked, diagnostics), file=sys.stderr)
    if method == "nuts" and not diagnostics["ok"]:
        msg = ("SAMPLER DIAGNOSTICS FAILED: " + ", ".join(
            f"{k}={diagnostics[k]:.4g}" for k in THRESHOLDS)
            + " (want max_rhat <= 1.01, ESS >= 400, 0 divergences); treat this posterior "
              "with caution" + (worst_text(diagnostics) or ", or refit with more draws/tune")
            + (f"; {stacked_text(stacked, diagnostics)}" if stacked else ""))
        warnings.warn(msg, stacklevel=2)
        print(f"WARNING: {msg}", file=sys.stderr)
    return Posterior.from_inference_data(keep)


def _sample(model, sampler, method, draws, tune, chains, seed, cores, progress, low_rank,
            target_accept, escalate, backend, precision, device, ess_target, stack=True):
    """NUTS (nutpie or PyMC), or an approximation, of ``model``, as :func:`fit` asks for it.
    Returns the trace and what :func:`fit` stores of how it was drawn. With ``stack``, each
    NUTS trace loses the chains of modes that predict clearly worse before its divergences
    are counted (:func:`bayes_prune.stacking.drop_stray_modes`)."""
    escalated_from, pareto_k, stacked = None, None, None
    which = _sampler(sampler)
    start = time.perf_counter()
    if method != "nuts":
        from .variational import approximate

        which, backend, precision, chains = method, "pytensor", "float64", 1
        idata, pareto_k = approximate(model, method, draws, seed, progress)
        run = {"draws": draws, "stopped": "max_draws"}
    elif which == "nutpie":
        backend = backend_of(backend, device)
        precision = precision_of(backend, precision)
        compiled = compile_model(model, backend, precision, device)

        def nuts(accept, tune=tune):
            return sample(compiled, tune=tune, max_draws=draws, chains=chains, seed=seed,
                          target=Target(ess=ess_target, variables=tuple(_KEEP))
                          if ess_target else None,
                          progress=progress, low_rank=low_rank, target_accept=accept,
                          cores=cores)
    else:
        import pymc as pm

        backend, precision = "pytensor", "float64"

        def nuts(accept, tune=tune):
            with model:
                return pm.sample(draws=draws, tune=tune, chains=chains,
                                 cores=min(cores or os.cpu_count() or 1, chains),
                                 random_seed=seed, progressbar=progress,
                                 target_accept=accept, compute_convergence_checks=False
                                 ), {"draws": draws, "stopped": "max_draws"}
    if method == "nuts":
        def nuts_stacked(accept, tune=tune):
            idata, run = nuts(accept, tune)
            # a run stopped at the ESS target met R-hat: its chains share one mode
            if not stack or run["stopped"] == "target":
                return idata, None, run
            return (*drop_stray_modes(idata, model), run)

        idata, stacked, run = nuts_stacked(target_accept)
        n_div = _divergences(idata)
        # the ladder: the default acceptance, then smaller steps, then the small grids'
        # smallest steps and longest tuning (sampler.ESCALATION)
        for accept, at_least in ESCALATION if escalate else ():
            if not n_div:
                break
            print(f"{n_div} divergence(s) at target acceptance {target_accept}: sampling "
                  f"again at {accept}" + (f" with {max(tune, at_least)} tuning steps"
                                          if at_least > tune else "")
                  + " (smaller steps, about twice the time or more)", file=sys.stderr)
            escalated_from = escalated_from or target_accept
            target_accept, tune = accept, max(tune, at_least)
            idata, stacked, run = nuts_stacked(target_accept, tune)
            run = {**run, "tune": tune}
            n_div = _divergences(idata)
    seconds = time.perf_counter() - start
    return (idata, run, pareto_k, which, backend, precision, chains, target_accept,
            escalated_from, seconds, stacked)


def _divergences(idata) -> int:
    stats = idata.get("sample_stats")
    if stats is None or "diverging" not in stats:
        return 0
    return int(stats["diverging"].sum())


def _jsonable(x):
    if isinstance(x, np.generic):
        return x.item()
    raise TypeError(f"cannot store {type(x).__name__} in the posterior's metadata")
