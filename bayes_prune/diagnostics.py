"""A fit's sampler diagnostics: R-hat, bulk and tail ESS over every sampled variable, and the
divergence count, against :data:`THRESHOLDS`; when R-hat fails, the worst-mixed scalar and
whether its chains sit apart (more than one mode) or overlap and move slowly. numpy and ArviZ
only: :mod:`bayes_prune.fit` and :mod:`bayes_prune.stacking` build on it."""

from __future__ import annotations

import arviz as az
import numpy as np

__all__ = ["MODE_GAP", "THRESHOLDS", "diagnose", "kept", "modes", "worst_text"]

# chains whose medians of the worst-mixed scalar lie more than this many within-chain sds apart
# sit in different modes (:func:`modes`)
MODE_GAP = 2.0
THRESHOLDS = {"max_rhat": 1.01, "min_ess_bulk": 400.0, "min_ess_tail": 400.0,
              "divergences": 0}
# the posterior variables a fit keeps, and those its diagnostics and the sampler's ESS target check
_KEEP = ["theta", "sigma", "sigma_seed", "tau", "rho", "tau_m", "log_m_config",
         "log_eps_np_config", "log_eps_np_run"]


def kept(posterior):
    """The variables of ``posterior`` (a dataset) that a fit keeps (:data:`_KEEP`)."""
    return posterior[[v for v in _KEEP if v in posterior]]


def diagnose(idata) -> dict:
    """R-hat, bulk and tail ESS over every sampled variable, and the divergence count, with
    ``ok`` telling whether all meet :data:`THRESHOLDS`; when R-hat does not, ``worst`` names
    the scalar with the largest (:func:`_worst`)."""
    post = kept(idata.posterior)
    rhats = az.rhat(post)
    rhat = float(rhats.to_array().max())
    bulk = float(az.ess(post, method="bulk").to_array().min())
    tail = float(az.ess(post, method="tail").to_array().min())
    div = int(idata.sample_stats["diverging"].sum()) if "diverging" in idata.sample_stats else 0
    out = {"max_rhat": rhat, "min_ess_bulk": bulk, "min_ess_tail": tail, "divergences": div}
    out["ok"] = bool(rhat <= THRESHOLDS["max_rhat"] and bulk >= THRESHOLDS["min_ess_bulk"]
                     and tail >= THRESHOLDS["min_ess_tail"] and div <= THRESHOLDS["divergences"])
    if rhat > THRESHOLDS["max_rhat"]:
        out["worst"] = _worst(post, rhats)
    return out


def _worst(post, rhats) -> dict:
    """The scalar of ``post`` with the largest R-hat (of ``rhats``): its name with its
    coordinates (``theta[cnn/fashion-mnist, log_gamma]``), its R-hat and each chain's median.
    Chains whose medians lie apart say the posterior has more than one mode (or a chain has
    not left its start), which more draws do not fix."""
    name = max(rhats.data_vars, key=lambda v: float(rhats[v].max()))
    r = rhats[name]
    at = np.unravel_index(int(np.nanargmax(r.to_numpy())), r.shape)
    where = {d: r[d].to_numpy()[i] for d, i in zip(r.dims, at, strict=True)}
    label = name + (f"[{', '.join(str(v) for v in where.values())}]" if where else "")
    x = post[name].sel(where)
    return {"variable": label, "rhat": float(r.to_numpy()[at]),
            "chain_medians": [round(float(m), 4) for m in x.median("draw").to_numpy()],
            "within_chain_sd": round(float(np.sqrt(x.var("draw").mean())), 4)}


def worst_text(diagnostics: dict) -> str:
    """What the failure message says of the worst-mixed scalar (:func:`_worst`), if any."""
    worst = diagnostics.get("worst")
    if not worst:
        return ""
    medians = worst["chain_medians"]
    apart = len(modes(medians, worst["within_chain_sd"])) > 1
    return (f". Worst mixed: {worst['variable']}, R-hat {worst['rhat']:.3f}, chain medians "
            + ", ".join(f"{m:.3g}" for m in medians)
            + ("; chain medians this far apart point to more than one mode, which more "
               "draws or tuning do not fix: this posterior's bands mix the modes in whatever "
               "share its chains happened to find" if apart else
               "; the chains overlap but move slowly: more draws (--draws) may be enough"))


def modes(medians, within_sd: float) -> list[list[int]]:
    """The chains (indices) grouped by mode: sorted by ``medians`` (one per chain, of one
    scalar), a gap of more than ``MODE_GAP * within_sd`` between neighbours starts a new
    group. Groups come in order of their medians, chains in each in order of index."""
    medians = np.asarray(medians, float)
    order = np.argsort(medians, kind="stable")
    groups = [[int(order[0])]]
    for a, b in zip(order[:-1], order[1:], strict=True):
        if medians[b] - medians[a] > MODE_GAP * within_sd:
            groups.append([])
        groups[-1].append(int(b))
    return [sorted(g) for g in groups]
