"""Chains that sit in different modes: which mode the predictions rest on, by stacking.

A fit whose chains settle in separate modes fails R-hat however long it runs, and pooling its
chains evenly mixes the modes in whatever share the starts happened to find (two of four
chains in each, say), a share no model or data chose. Yao, Vehtari and Gelman ("Stacking for
non-mixing Bayesian computations: the curse and blessing of multimodal posteriors", JMLR 2022)
weigh the modes instead by how well each predicts the data: each mode's leave-one-out
predictive density per point (PSIS-LOO over its own chains' draws), and the weights ``w`` on
the simplex that maximise ``sum_i log sum_m w_m p_m(y_i | y_-i)``. A mode whose weight is
near 0 predicts no point better than the others do.

Where the modes are. The chains are split at the worst-mixed scalar (the one with the largest
R-hat, :func:`bayes_prune.diagnostics.diagnose`): sorted by their median of it, a gap of more than
:data:`MODE_GAP` within-chain sds starts a new mode; the same test by which ``fit``'s failure
message tells a second mode from slow mixing.

What ``fit`` does with the weights (:func:`bayes_prune.fit.fit`): when one mode's weight is at
least :data:`KEEP_WEIGHT` and its elpd_loo exceeds every other mode's by more than
:data:`MIN_ELPD_DIFF` and by more than :data:`DIFF_SE` standard errors of the difference (the
usual reading of a LOO comparison: below that the modes predict alike, and weights near 0 or 1
between near-equal predictions are noise), and the mode holds at least two chains (R-hat needs
two), the posterior is that mode's chains alone and its diagnostics are theirs; otherwise every
chain is kept, the failure stands, and the weights are reported. On the grid that motivated it,
the Fashion CNN grid fitted alone, the two modes of gamma weigh 0.40 / 0.60 (elpd_loo 1830.3 /
1840.8, difference 1.0 standard error): both predict part of the data, so both are kept
(experiments/README, "The Fashion CNN grid alone").

A chain stuck where it started. ``fit`` applies the same test to each sampling of its ladder
before it counts divergences (:func:`drop_stray_modes`). With ``--dense-depth``, the
leave-group-out fit that holds out the MNIST-1D MLP (12,167 points, seed 0) had one chain that
never left its jittered start: log density -1.05e6 against 17,357, step size 0.0005, every draw
divergent. Its 2,000 divergences sent the fit to target acceptance 0.95 (285 s in all); a
chain of that kind at smaller steps is what held a fit for more than 30 minutes at stop 41.
Stacked, it weighs 0.002 (elpd_loo -1,006,818 against 16,611): it is dropped, the other three
chains pass (max R-hat 1.005, bulk / tail ESS 1,320 / 1,203, 0 divergences) and the fit ends
at the first rung (186 s of sampling). The chains still run to ``max_draws``, since the ESS
target's R-hat sees the stuck chain.
"""

from __future__ import annotations

import sys
import warnings

import arviz as az
import numpy as np
from scipy.optimize import minimize
from scipy.special import logsumexp

from .diagnostics import MODE_GAP, THRESHOLDS, diagnose, kept, modes

__all__ = ["DIFF_SE", "KEEP_WEIGHT", "MIN_ELPD_DIFF", "MODE_GAP", "modes", "stack",
           "drop_stray_modes", "stack_modes", "stacked_text", "stacking_weights"]

KEEP_WEIGHT = 0.95
MIN_ELPD_DIFF = 4.0
DIFF_SE = 2.0


def stacking_weights(lpd: np.ndarray) -> np.ndarray:
    """Stacking weights of ``M`` predictive distributions from their pointwise leave-one-out
    log densities ``lpd`` ``(M, points)``: the ``w`` on the simplex maximising
    ``sum_i log sum_m w_m exp(lpd[m, i])`` (softmax-parametrised, L-BFGS)."""
    lpd = np.asarray(lpd, float)
    if lpd.shape[0] == 1:
        return np.ones(1)

    def neg(z):
        log_w = np.concatenate([[0.0], z])
        log_w = log_w - logsumexp(log_w)
        per = log_w[:, None] + lpd
        total = logsumexp(per, axis=0)  # (points,)
        resp = np.exp(per - total)  # each point's share of each mode
        grad = resp.sum(axis=1) - lpd.shape[1] * np.exp(log_w)  # d/d log_w via softmax
        return -float(total.sum()), -grad[1:]

    z = minimize(neg, np.zeros(lpd.shape[0] - 1), jac=True, method="L-BFGS-B").x
    w = np.exp(np.concatenate([[0.0], z]) - logsumexp(np.concatenate([[0.0], z])))
    return w / w.sum()


def stack(idata, worst: dict) -> dict | None:
    """The modes of ``idata``'s chains at the worst-mixed scalar ``worst`` (``chain_medians``,
    ``within_chain_sd``, as :func:`bayes_prune.diagnostics.diagnose` reports it) and their stacking
    weights, from ``idata``'s pointwise log likelihood. ``None`` when the chains form one mode.

    Returns ``{"modes": [[chain, ...], ...], "weights": [...], "elpd_loo": [...],
    "diff_se": [...], "keep": [chain, ...] or None}``: ``diff_se`` the standard error of each
    mode's elpd_loo difference to the best's (0 for the best), ``keep`` the chains of a mode
    that predicts clearly best (module docstring)."""
    groups = modes(worst["chain_medians"], worst["within_chain_sd"])
    if len(groups) < 2:
        return None
    with warnings.catch_warnings():  # a high Pareto k is reported by the elpd, not printed
        warnings.simplefilter("ignore")
        lpd = np.stack([az.loo(idata.isel(chain=chains), pointwise=True).loo_i.to_numpy().ravel()
                        for chains in groups])
    w = stacking_weights(lpd)
    best = int(np.argmax(w))
    diff = lpd[best] - lpd
    se = np.sqrt(diff.shape[1]) * diff.std(axis=1)
    gap = np.delete(diff.sum(axis=1), best)
    clear = bool(len(groups[best]) >= 2 and w[best] >= KEEP_WEIGHT
                 and np.all(gap > MIN_ELPD_DIFF)
                 and np.all(gap > DIFF_SE * np.delete(se, best)))
    return {"modes": groups, "weights": [round(float(x), 4) for x in w],
            "elpd_loo": [round(float(x), 2) for x in lpd.sum(axis=1)],
            "diff_se": [round(float(x), 2) for x in se], "keep": groups[best] if clear else None}


def stack_modes(idata, model, diagnostics: dict) -> dict | None:
    """:func:`stack` of the sampler's trace ``idata`` (every variable of ``model``), whose
    failed ``diagnostics`` (:func:`~bayes_prune.diagnostics.diagnose`) name the worst-mixed
    scalar; the pointwise log likelihood is computed here unless ``idata`` has it. ``None``
    when the chains sit in one mode or the stacking itself fails (a one-line note: a sampled
    posterior is never lost to its diagnosis); else :func:`stack`'s result with
    ``all_chains``, the diagnostics of every chain."""
    import pymc as pm

    worst = diagnostics["worst"]
    if len(modes(worst["chain_medians"], worst["within_chain_sd"])) < 2:
        return None  # before the log likelihood, which costs seconds
    try:
        if "log_likelihood" not in idata:
            for rv in model.free_RVs:  # as for --loo: the run latents' initval blocks the rewrite
                model.set_initval(rv, None)
            ll = pm.compute_log_likelihood(idata, model=model, progressbar=False,
                                           extend_inferencedata=False)
            idata = az.InferenceData(posterior=kept(idata.posterior), log_likelihood=ll)
        stacked = stack(idata, worst)
    except Exception as e:
        print(f"NOTE: the chains' modes were not stacked ({type(e).__name__}: {e})",
              file=sys.stderr)
        return None
    stacked["all_chains"] = {k: diagnostics[k] for k in (*THRESHOLDS, "worst")}
    return stacked


def stacked_text(stacked: dict, diagnostics: dict) -> str:
    """What fit prints of the modes its chains found and their stacking weights."""
    parts = ", ".join(f"chains {'+'.join(map(str, m))}: weight {w:.3f}, elpd_loo {e:.1f}"
                      + (f" (difference se {se:.1f})" if se else "")
                      for m, w, e, se in zip(stacked["modes"], stacked["weights"],
                                             stacked["elpd_loo"], stacked["diff_se"],
                                             strict=True))
    if not stacked["keep"]:
        return (f"the chains' modes, stacked by leave-one-out predictive density: {parts}; "
                "no mode predicts clearly better, so every chain is kept")
    worst = stacked["all_chains"]["worst"]
    every = stacked["all_chains"]
    return (f"the chains sat in {len(stacked['modes'])} modes of {worst['variable']} "
            f"(over all chains R-hat {worst['rhat']:.3f}, {every['divergences']} "
            "divergences); stacked by their leave-one-out "
            f"predictive density ({parts}), the posterior is chains "
            f"{'+'.join(map(str, stacked['keep']))} alone: max R-hat "
            f"{diagnostics['max_rhat']:.4f}, bulk / tail ESS {diagnostics['min_ess_bulk']:.0f} / "
            f"{diagnostics['min_ess_tail']:.0f}, {diagnostics['divergences']} divergences")


def drop_stray_modes(idata, model):
    """The sampler's trace ``idata`` (every variable of ``model``) without the chains of modes
    that predict clearly worse (:func:`stack_modes`), and the stacking result (``None`` when
    the chains meet every threshold or sit in one mode). ``fit`` calls it on each sampling
    before it counts divergences: a chain stuck where it started (every draw divergent, its
    log density a million below the others') is dropped instead of sending the fit up the
    ladder of smaller steps."""
    before = diagnose(idata)
    if before["ok"] or "worst" not in before:
        return idata, None
    stacked = stack_modes(idata, model, before)
    if stacked and stacked["keep"]:
        idata = idata.isel(chain=stacked["keep"])
        idata = idata.assign_coords(chain=np.arange(len(stacked["keep"])),
                                    groups=[g for g in idata.groups()
                                            if "chain" in getattr(idata, g).dims])
    return idata, stacked
