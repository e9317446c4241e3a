"""Approximate posteriors for interactive work: ADVI (PyMC) and Pathfinder (pymc-extras).

``fit --method advi|pathfinder`` returns draws of the same variables NUTS gives, labelled
approximate: the method and a Pareto k are stored with them and every command reading the
file says so (:attr:`bayes_prune.posterior.Posterior.approximate`). The Pareto k is PSIS's
shape estimate of the importance weights ``p(z) / q(z)`` of ``draws`` draws of the
approximation ``q`` in the sampler's unconstrained space (Yao et al. 2018): below 0.7 the
approximation can be trusted for expectations, above it not.
"""

from __future__ import annotations

import numpy as np

from .errors import UserError

__all__ = ["METHODS", "approximate"]

METHODS = ("nuts", "advi", "pathfinder")
ADVI_STEPS = 20_000  # mean-field ADVI's optimisation steps


def approximate(model, method: str, draws: int, seed: int, progress: bool):
    """Fit ``method`` (``advi`` or ``pathfinder``) to ``model`` and return ``(idata,
    pareto_k)``: ``draws`` draws in one chain, and the PSIS Pareto k of the approximation."""
    import pymc as pm

    if method not in METHODS[1:]:
        raise UserError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    init = {rv.name: v for rv, v in model.rvs_to_initial_values.items() if v is not None}
    if method == "advi":
        with model:
            approx = pm.fit(ADVI_STEPS, method="advi", random_seed=seed, progressbar=progress,
                            callbacks=[pm.callbacks.CheckParametersConvergence(tolerance=1e-3)])
            idata = approx.sample(draws, random_seed=seed)
        group = approx.groups[0]
        mu, sd = group.mean.eval(), group.std.eval()
        rng = np.random.default_rng(seed)
        z = mu + sd * rng.standard_normal((draws, mu.size))
        log_q = (-0.5 * ((z - mu) / sd) ** 2 - np.log(sd) - 0.5 * np.log(2 * np.pi)).sum(1)
        order = group.ordering
    else:
        try:
            import pymc_extras as pmx
        except ImportError:
            raise UserError("--method pathfinder needs pymc-extras (pip install "
                            "'bayes-prune[approximate]')") from None
        for rv in model.free_RVs:
            model.set_initval(rv, None)
        try:
            with model:
                idata = pmx.fit(method="pathfinder", num_draws=draws, random_seed=seed,
                                progressbar=progress, display_summary=progress, initvals=init)
        finally:
            for name, value in init.items():
                model.set_initval(model[name], value)
        return idata, _pareto_k_of(idata)
    logp = model.compile_logp(jacobian=True)
    log_p = np.array([logp({name: row[s].reshape(shape) for name, (_, s, shape, _) in
                            order.items()}) for row in z])
    return idata, _pareto_k(log_p - log_q)


def _pareto_k_of(idata) -> float:
    """Pathfinder's own PSIS k (pymc-extras stores it in ``sample_stats``), NaN when absent."""
    stats = idata.get("sample_stats")
    if stats is not None and "pareto_k" in stats:
        return float(stats["pareto_k"])
    return float("nan")


def _pareto_k(log_w: np.ndarray) -> float:
    import arviz as az

    log_w = log_w[np.isfinite(log_w)]
    _, k = az.psislw(log_w - log_w.max())
    return float(k)
