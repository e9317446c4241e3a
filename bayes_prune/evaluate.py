"""Extrapolation evaluation: fit on some configurations, predict others nobody trained.

Every method turns the fitting grid into predictive draws of ``log test_error`` for each
held-out row, shape ``(rows, draws)``; the held-out rows' own measurements (their dense points
included) are never shown to a method. Methods:

- ``lsq``: the paper's least squares, joint law per (arch, task) group, dense error from the
  least-squares dense envelope; one draw, no band (``coverage_*`` is ``None``).
- ``bootstrap``: the same fit repeated on configurations resampled with replacement; bands are
  percentiles of the refits, the usual way scaling-law fits get error bars.
- ``bayes``: the hierarchical model's posterior prediction band (:mod:`bayes_prune.fit`).

Scores per group and method: ``delta = (pred - obs) / obs`` with ``pred`` the draws' median;
median ``|delta|``, mean and std of ``delta``; coverage of the central 50 % and 90 % bands, with
what a band calibrated for these very rows would cover of them (``coverage_*_range``, 5th-95th
percentile, and the observed coverage's rank among them, ``coverage_*_rank``: on a few
configurations whose points share most of their uncertainty, a calibrated 90 % band covers
nearly all of them more often than not); and
the mean log predictive density ``lpd`` of the observed errors under a normal approximation of
each point's predictive log error (for ``lsq``, its fitting residual sd). And where along the
curve the points miss (``by_density``, :func:`by_density`): per interval of density, the mean
log miss and the 90 % band's coverage and width.
"""

from __future__ import annotations

import copy
import re
import time
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from . import lsq
from .discrepancy import extrapolation_discrepancy, seen_by, without_seen
from .errors import UserError
from .grid import CONFIG_KEY, GROUP_KEY, RUN_KEY, SIZE_AXES, random_errors
from .law import log_dense_error, log_error

__all__ = ["METHODS", "parse_split", "split_grid", "predict_lsq", "predict_bootstrap",
           "predict_bayes", "score", "replica_coverages", "by_density", "score_posterior",
           "evaluate", "leave_group_out", "interior_configs", "as_scored", "unseen_log_draws",
           "fit_quality", "extrapolation_discrepancy"]

METHODS = ("bayes", "lsq", "bootstrap")


def parse_split(text: str) -> float:
    """``'params<=X'`` -> X: the fitting set is every configuration with at most X weights."""
    m = re.fullmatch(r"\s*params\s*<=\s*([0-9.eE+]+)\s*", text)
    if not m:
        raise UserError(f"--split {text!r} is not of the form params<=X (e.g. params<=20000)")
    return float(m.group(1))


def split_grid(grid: pd.DataFrame, max_params: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(fitting set, held-out set): configurations with ``params_total <= max_params`` vs the
    rest. Both must be non-empty."""
    small = grid["params_total"] <= max_params
    if small.all() or not small.any():
        raise UserError(f"--split params<={max_params:g} leaves an empty "
                        f"{'held-out' if small.all() else 'fitting'} set; params_total ranges "
                        f"{grid['params_total'].min()}..{grid['params_total'].max()}")
    return grid[small].reset_index(drop=True), grid[~small].reset_index(drop=True)


def _log_predict(rows: pd.DataFrame, joint: lsq.LsqFit, dense) -> np.ndarray:
    eps0 = random_errors(rows).to_numpy(float)
    log_np = log_dense_error(rows["params_total"].to_numpy(float),
                             rows["n_train"].to_numpy(float), dense, eps0)
    return log_error(rows["density"].to_numpy(float), rows["depth"].to_numpy(float),
                     rows["width"].to_numpy(float), np.exp(log_np), joint.law)


def _by_group(fit_grid, holdout, per_group: Callable) -> np.ndarray:
    """Apply ``per_group(fit_rows, held_rows) -> (n_held, draws)`` to each (arch, task) group
    of the held-out set and stack the answers in ``holdout``'s row order."""
    parts, index = [], []
    for key, held in holdout.groupby(GROUP_KEY, sort=False):
        mask = (fit_grid[GROUP_KEY] == pd.Series(key, index=GROUP_KEY)).all(axis=1)
        if not mask.any():
            raise UserError(f"held-out group {'/'.join(key)} has no configuration in the "
                            "fitting set; least squares cannot predict it")
        parts.append(per_group(fit_grid[mask], held))
        index.append(held.index.to_numpy())
    order = np.argsort(np.concatenate(index))
    return np.concatenate(parts)[order]


def predict_lsq(fit_grid: pd.DataFrame, holdout: pd.DataFrame) -> np.ndarray:
    """Least-squares predictions of ``log test_error``, shape ``(rows, 1)``."""
    def one(fit_rows, held):
        return _log_predict(held, *lsq.fit_joint_and_dense(fit_rows))[:, None]
    return _by_group(fit_grid, holdout, one)


def predict_bootstrap(fit_grid: pd.DataFrame, holdout: pd.DataFrame, n_boot: int = 40,
                      seed: int = 0) -> np.ndarray:
    """Bootstrap least squares: ``n_boot`` refits on configurations resampled with replacement
    (each started from the full fit), shape ``(rows, n_boot)``."""
    rng = np.random.default_rng(seed)

    def one(fit_rows, held):
        full = lsq.fit_group(fit_rows, "joint")
        config = fit_rows.groupby(CONFIG_KEY, sort=False).ngroup().to_numpy()
        members = [np.flatnonzero(config == c) for c in range(config.max() + 1)]
        draws = []
        for _ in range(n_boot):
            pick = rng.integers(0, len(members), len(members))
            # Each copy of a configuration gets its own seeds so that run keys stay unique.
            sample = pd.concat([fit_rows.iloc[members[c]].assign(
                seed=fit_rows["seed"].iloc[members[c]] + 1_000_000 * i)
                for i, c in enumerate(pick)], ignore_index=True)
            draws.append(_log_predict(held, *_bootstrap_refit(sample, full)))
        return np.stack(draws, axis=1)
    return _by_group(fit_grid, holdout, one)


def _bootstrap_refit(sample: pd.DataFrame, full: lsq.LsqFit):
    try:
        return lsq.fit_group(sample, "joint"), lsq.fit_dense(sample)
    except (ValueError, FloatingPointError):  # a degenerate resample: keep the full fit
        return full, lsq.fit_dense(sample)


def predict_bayes(fit_grid: pd.DataFrame, holdout: pd.DataFrame,
                  diagnostics: dict | None = None,
                  log: Callable[[str], None] | None = None, **fit_kwargs) -> np.ndarray:
    """Posterior prediction-band draws of ``log test_error``, shape ``(rows, draws)``; the
    fit's sampler diagnostics (:func:`bayes_prune.diagnostics.diagnose`) go into ``diagnostics``."""
    from .fit import fit

    posterior = fit(fit_grid, **fit_kwargs)
    if diagnostics is not None:
        diagnostics.update(posterior.diagnostics)
    return unseen_log_draws(posterior, holdout, log=log)


def unseen_log_draws(post, holdout: pd.DataFrame, seed: int = 0,
                     log: Callable[[str], None] | None = None) -> np.ndarray:
    """Log prediction-band draws of ``holdout``'s rows in order, shape ``(rows, draws)``, each
    (arch, task) group's rows predicted without the borrowed reference measurements that may
    have seen *them* (:func:`as_scored` on its rows): a group's score may use what the
    reference grids measured of the other groups, never of itself. Groups that leave out the
    same measurements (all of them, most often) are predicted together. ``log`` is told
    which measurements were left out, if any."""
    holdout = holdout.reset_index(drop=True)
    disc = post.meta.get("discrepancy") or {}
    batches: dict[tuple, list[np.ndarray]] = {}
    for _, rows in holdout.groupby(GROUP_KEY, sort=False):
        key = tuple(seen_by(disc, rows)) if disc else ()
        batches.setdefault(key, []).append(rows.index.to_numpy())
    left_out = sorted({g for key in batches for g in key})
    if left_out and log:
        log(f"bayes: held-out rows inside the reference grids' sizes are scored without the "
            f"shipped drift measurement of their own group, which may have seen them "
            f"({', '.join(left_out)})")
    out = None
    for idx in batches.values():  # rows in holdout's order: one batch predicts as a whole
        rows = holdout.loc[np.sort(np.concatenate(idx))]
        d = np.log(as_scored(post, rows).predict_draws(rows.reset_index(drop=True),
                                                       band="prediction", seed=seed))
        out = np.empty((len(holdout), d.shape[1]), d.dtype) if out is None else out
        out[rows.index.to_numpy()] = d
    return out


def as_scored(post, holdout: pd.DataFrame):
    """``post`` as scored on ``holdout``: without the borrowed reference groups whose
    measurement may have seen these rows (:func:`bayes_prune.discrepancy.without_seen`), so
    that a split of the reference grids' own rows scores what a user with those rows alone
    would get; a shallow copy where any is removed, ``post`` itself otherwise."""
    disc = post.meta.get("discrepancy")
    if not disc:
        return post
    unseen = without_seen(disc, holdout)
    if unseen is disc:
        return post
    post = copy.copy(post)
    post.meta = dict(post.meta, discrepancy=unseen)
    return post


def score(holdout: pd.DataFrame, log_draws: np.ndarray, noise_sd: float | None = None) -> dict:
    """Scores of predictive draws ``(rows, draws)`` of log error against ``holdout``."""
    obs = lsq.observed_errors(holdout)
    log_obs = np.log(obs)
    pred = np.exp(np.median(log_draws, axis=1))
    delta = (pred - obs) / obs
    out = {"n_holdout": int(len(holdout)), "median_abs_delta": float(np.median(np.abs(delta))),
           "delta_mean": float(delta.mean()), "delta_std": float(delta.std())}
    banded = log_draws.shape[1] > 1
    for level in (50, 90):
        if banded:
            lo, hi = np.percentile(log_draws, [50 - level / 2, 50 + level / 2], axis=1)
            covered = float(np.mean((log_obs >= lo) & (log_obs <= hi)))
            out[f"coverage_{level}"] = covered
            out.update(_if_calibrated(log_draws, lo, hi, covered, level))
        else:
            out[f"coverage_{level}"] = None
            out.update({f"coverage_{level}_range": None, f"coverage_{level}_rank": None})
    mu = log_draws.mean(axis=1)
    sd = log_draws.std(axis=1) if banded else np.full_like(mu, noise_sd or np.nan)
    sd = np.maximum(sd, 1e-6)
    lpd = -0.5 * ((log_obs - mu) / sd) ** 2 - np.log(sd * np.sqrt(2 * np.pi)) - log_obs
    out["lpd"] = float(lpd.mean())
    return out


def replica_coverages(draws: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Per draw of ``draws`` ``(rows, draws)``, the share of rows whose draw lies inside the
    band ``[lo, hi]`` (per row): what the band covers when that draw is the truth."""
    return ((draws >= lo[:, None]) & (draws <= hi[:, None])).mean(axis=0)


def _if_calibrated(log_draws: np.ndarray, lo: np.ndarray, hi: np.ndarray, covered: float,
                   level: int) -> dict:
    """What a band calibrated for these very rows would cover of them, against what it did.

    Each predictive draw (a joint draw of every row: the rows of one configuration, and the
    configurations of one group, share what the draw shares) is taken as the truth in turn,
    and its coverage by the band is counted. Their mean is the band's level, but on a few
    configurations their spread is wide and skewed: a band whose uncertainty is mostly a
    shift shared by a configuration's points covers nearly all of them or few. Returns
    ``coverage_<level>_range``, the 5th and 95th percentiles of those coverages, and
    ``coverage_<level>_rank``, the share of them below the observed coverage (ties counted
    half): near 0 the band is too narrow for these rows, near 1 too wide, beyond what the
    draws' own spread explains."""
    replicas = replica_coverages(log_draws, lo, hi)
    rank = np.mean(replicas < covered) + 0.5 * np.mean(replicas == covered)
    return {f"coverage_{level}_range": [float(q) for q in np.percentile(replicas, [5, 95])],
            f"coverage_{level}_rank": float(rank)}


# intervals of density along a curve: the high plateau and power law, the knee, the dense plateau
DENSITY_EDGES = (0.0, 0.01, 0.05, 0.2, 0.6, 0.999, 1.0)
DENSITY_INTERVALS = ("< 0.01", "0.01-0.05", "0.05-0.2", "0.2-0.6", "0.6-1", "dense")


def by_density(holdout: pd.DataFrame, log_draws: np.ndarray) -> list[dict]:
    """Where along the curve predictive draws ``(rows, draws)`` of log error miss ``holdout``:
    per interval of density that holds points (:data:`DENSITY_INTERVALS`, the last one the
    dense points), ``points``, ``log_miss`` (the mean of ``log obs - log median``: negative,
    the networks erred less than predicted), ``coverage_90`` and ``width_90`` (the central 90 %
    band's median width in log error; both ``None`` for a method without a band)."""
    log_obs = np.log(lsq.observed_errors(holdout))
    lo, med, hi = np.percentile(log_draws, [5, 50, 95], axis=1)
    banded = log_draws.shape[1] > 1
    where = np.digitize(holdout["density"].to_numpy(float), DENSITY_EDGES[1:-1], right=True)
    out = []
    for k, name in enumerate(DENSITY_INTERVALS):
        i = where == k
        if i.any():
            out.append({"density": name, "points": int(i.sum()),
                        "log_miss": float(np.mean(log_obs[i] - med[i])),
                        "coverage_90": float(np.mean((log_obs[i] >= lo[i]) & (log_obs[i] <= hi[i])))
                        if banded else None,
                        "width_90": float(np.median(hi[i] - lo[i])) if banded else None})
    return out


DIAGNOSTIC_KEYS = ("max_rhat", "min_ess_bulk", "divergences")


def evaluate(fit_grid: pd.DataFrame, holdout: pd.DataFrame,
             methods: Sequence[str] = METHODS, n_boot: int = 40, seed: int = 0,
             log: Callable[[str], None] | None = None, **fit_kwargs) -> list[dict]:
    """Scores per (arch, task) group of ``holdout`` and method, as ``evaluate --json`` prints
    them: keys arch, task, method, n_holdout, median_abs_delta, delta_mean, delta_std,
    coverage_50, coverage_90, coverage_50_range, coverage_90_range, coverage_50_rank,
    coverage_90_rank (:func:`score`), lpd, seconds (the method's fit and prediction time), for
    the Bayesian rows the fit's max_rhat, min_ess_bulk and divergences, and by_density
    (:func:`by_density`). ``log``
    is told each method as it starts and ends (a fit can take minutes)."""
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise UserError(f"unknown method(s) {', '.join(unknown)}; choose from "
                        f"{', '.join(METHODS)}")
    rows = []
    for method in methods:
        start = time.perf_counter()
        if log:
            log(f"{method}: fitting {len(fit_grid)} points, predicting {len(holdout)}")
        if method == "lsq":
            draws = predict_lsq(fit_grid, holdout)
        elif method == "bootstrap":
            draws = predict_bootstrap(fit_grid, holdout, n_boot=n_boot, seed=seed)
        else:
            draws = predict_bayes(fit_grid, holdout, seed=seed, diagnostics=(diag := {}),
                                  log=log, **fit_kwargs)
        seconds = time.perf_counter() - start
        # the Bayesian rows carry their fit's diagnostics: a band from a fit that did not
        # converge is not the model's band
        sampler = {k: diag.get(k) for k in DIAGNOSTIC_KEYS} if method == "bayes" else {}
        if log:
            log(f"{method}: done in {seconds:.0f} s" + "".join(
                f", {k} {v:.4g}" for k, v in sampler.items() if v is not None))
        noise = _lsq_residual_sd(fit_grid) if method == "lsq" else None
        rows += _group_rows(holdout, draws, method, seconds, sampler, noise)
    return rows


def _group_rows(holdout: pd.DataFrame, draws: np.ndarray, method: str, seconds: float,
                sampler: dict, noise: float | None = None) -> list[dict]:
    """One row of scores per (arch, task) group of ``holdout`` (``draws`` aligned with its
    index, which runs 0..n-1)."""
    rows = []
    for key, held in holdout.groupby(GROUP_KEY, sort=True):
        i = held.index.to_numpy()
        rows.append({"arch": key[0], "task": key[1], "method": method,
                     **score(held, draws[i], noise_sd=noise), "seconds": seconds, **sampler,
                     "by_density": by_density(held, draws[i])})
    return rows


def score_posterior(post, holdout: pd.DataFrame, seed: int = 0,
                    log: Callable[[str], None] | None = None) -> list[dict]:
    """A saved posterior's prediction band scored on ``holdout`` (nothing is fitted): rows as
    :func:`evaluate`'s Bayesian ones, with the saved fit's diagnostics and ``seconds`` the
    prediction's time. ``holdout`` may lie beyond the fitted grid (the band then carries the
    extrapolation discrepancy the fit measured) or hold groups it never fitted, as ``query``
    answers them."""
    holdout = holdout.reset_index(drop=True)
    start = time.perf_counter()
    if log:
        log(f"bayes: the saved posterior predicting {len(holdout)} points")
    draws = unseen_log_draws(post, holdout, seed=seed, log=log)
    seconds = time.perf_counter() - start
    sampler = {k: post.diagnostics.get(k) for k in DIAGNOSTIC_KEYS}
    return _group_rows(holdout, draws, "bayes", seconds, sampler)


def leave_group_out(fit_grid: pd.DataFrame, holdout: pd.DataFrame,
                    log: Callable[[str], None] | None = None, **kwargs) -> list[dict]:
    """What a user's new group experiences: for each (arch, task) group of ``holdout``, fit
    on ``fit_grid`` plus the other groups' held-out rows and predict that group's. Rows as
    :func:`evaluate` returns them (``kwargs`` go to it), one per group and method."""
    rows = []
    groups = holdout.groupby(GROUP_KEY, sort=True)
    for n, (key, held) in enumerate(groups, 1):
        if log:
            log(f"leave-group-out {n}/{groups.ngroups}: {key[0]}/{key[1]}")
        others = holdout.drop(index=held.index)
        fit_on = pd.concat([fit_grid, others], ignore_index=True)
        rows += [r for r in evaluate(fit_on, held.reset_index(drop=True), log=log, **kwargs)
                 if (r["arch"], r["task"]) == key]
    return rows


def interior_configs(grid: pd.DataFrame, k: int, seed: int = 0
                     ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(fitting set, held-out set) with ``k`` interior configurations per (arch, task) group
    held out, drawn at random (``seed``): configurations whose depth, width and n_train each
    lie strictly between the group's smallest and largest value on every axis with at least
    three values (axes with fewer are not asked). Interpolation, as users ask of the grid."""
    if k < 1:
        raise UserError(f"--leave-configs-out must be >= 1, got {k}")
    rng = np.random.default_rng(seed)
    held_keys = []
    for key, rows in grid.groupby(GROUP_KEY, sort=True):
        cfg = rows[CONFIG_KEY].drop_duplicates()
        inside = np.ones(len(cfg), bool)
        for axis in SIZE_AXES:
            values = np.unique(cfg[axis])
            if len(values) >= 3:
                inside &= (cfg[axis] > values[0]).to_numpy() & (cfg[axis] < values[-1]).to_numpy()
        pool = cfg[inside]
        if len(pool) < k or len(pool) >= len(cfg):
            raise UserError(f"{'/'.join(key)}: {len(pool)} interior configuration(s) of "
                            f"{len(cfg)}; --leave-configs-out {k} needs at least {k} and some "
                            "left to fit")
        held_keys.append(pool.iloc[rng.choice(len(pool), k, replace=False)])
    held = pd.concat(held_keys)
    mask = grid[CONFIG_KEY].merge(held.assign(_h=True), on=CONFIG_KEY, how="left")["_h"]
    mask = mask.fillna(False).to_numpy(bool)
    return grid[~mask].reset_index(drop=True), grid[mask].reset_index(drop=True)


def _lsq_residual_sd(fit_grid: pd.DataFrame) -> float:
    # Spread of log(obs/pred) on the fitting set: the noise level a least-squares user would
    # quote, used only for the lsq method's lpd.
    return float(np.std(np.log1p(np.concatenate([f.delta for f in lsq.fit(fit_grid)]))))


def fit_quality(grid: pd.DataFrame) -> pd.DataFrame:
    """The paper's fit-quality table per (arch, task): mean and std of delta for Eq. 1 per
    network (``single_*``) and for the joint law (``joint_*``), and the seed-to-seed std of
    the error (relative to the mean over seeds at the same configuration and round)."""
    rows = []
    for key, g in grid.groupby(GROUP_KEY, sort=True):
        single = np.concatenate([f.delta for f in lsq.fit(g, "single")])
        joint = lsq.fit_group(g, "joint").delta
        mean = g.groupby(CONFIG_KEY + ["round"])["test_error"].transform("mean")
        n_seeds = g.groupby(CONFIG_KEY + ["round"])["seed"].transform("count")
        rel = ((g["test_error"] - mean) / mean)[(n_seeds > 1) & (mean > 0)]
        rows.append({"arch": key[0], "task": key[1],
                     "configurations": int(len(g[CONFIG_KEY].drop_duplicates())),
                     "runs": int(len(g[RUN_KEY].drop_duplicates())), "points": int(len(g)),
                     "single_delta_mean": single.mean(), "single_delta_std": single.std(),
                     "joint_delta_mean": joint.mean(), "joint_delta_std": joint.std(),
                     "seed_std": float(rel.std()) if len(rel) else float("nan")})
    return pd.DataFrame(rows)
