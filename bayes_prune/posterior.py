"""A fitted posterior, queried with numpy: no torch, no pymc on this path.

A query is a table of configurations (``arch, task, depth, width, n_train, density``, and
optionally ``params_total``, ``params_prunable``, ``n_test``); the answer is an array of error
draws, ``(rows, draws)``, and summaries of it. Per row:

- coefficients: the group's posterior draws of ``theta``; for an (arch, task) pair never
  fitted whose arch and task were each fitted, the crossed-pooling prior conditioned on the
  fitted groups' draws (the arch's and the task's effects as the fitted groups show them, plus
  a pair effect from its prior spread: an honest, wider band);
- dense error: the posterior of a trained configuration's dense error; for a configuration
  never trained, the group's dense law at its weight count plus the configuration scatter
  ``tau``. Weight counts come from the row, else the grid, else the architecture family
  (:func:`bayes_prune.families.param_counts`);
- with a fit's invariant scatter (``fit --invariant-scatter``): a trained configuration's
  posterior offset of its log invariant, a new one's ``Normal(0, tau_m)`` of its group;
- band ``expected``: the law at those draws (uncertainty about the mean error of a run);
  band ``prediction``: adds a new run's seed offset and the point noise (relative and
  binomial, at the group's test-set size): where a next measured run should fall;
- extrapolation: a configuration deeper, wider or with more data than its group's grid also
  gets a model-discrepancy offset of its log dense error and of its log invariant, growing
  with its log distance outside the grid, at the rate the law missed by in nested
  extrapolations inside the grids (:func:`bayes_prune.discrepancy.extrapolation_discrepancy`,
  stored by ``fit``; both bands). Each draw takes its rates from one group of the fit, the
  group's own with its pooling share, so that the band carries the groups' spread of drifts.
  The invariant's offset leans towards pruning better: above its median its variance takes
  the group's lean too (``skew_invariant``; :mod:`bayes_prune.discrepancy`). Far enough out,
  those log-normal offsets put draws above an error of 1; they are 1.
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

from . import coef_summary
from .beyond import Beyond
from .coef_summary import hdi
from .coords import CURVATURE, ZETA, Centres, dense_centres, dense_law, pooling_cov, prune_law
from .errors import UserError
from .grid import CONFIG_KEY
from .predict import Group, each_chunk, row_codes
from .priors import Priors

__all__ = ["Posterior", "hdi", "FORMAT", "QUERY_COLUMNS"]

FORMAT = "bayes_prune.posterior/2"
QUERY_COLUMNS = ("arch", "task", "depth", "width", "n_train", "density")
BANDS = ("expected", "prediction")
# the shipped posterior of the reference grids (bayes_prune.reference), loaded by that name
REFERENCE = Path(__file__).resolve().parent / "data" / "reference.nc"


class Posterior:
    """Posterior draws of the hierarchical model with what queries need to know of its grid."""

    def __init__(self, draws: dict[str, np.ndarray], meta: dict, idata=None):
        self.draws, self.meta, self.idata = draws, meta, idata
        self.coefs = list(meta["settings"]["coefs"])
        self.centres = Centres(**meta["centres"])
        self.groups = pd.DataFrame(meta["groups"])
        self.configs = pd.DataFrame(meta["configs"])
        self.archs, self.tasks = list(meta["archs"]), list(meta["tasks"])
        self.n_draws = draws["theta"].shape[0]
        self._group_index = {(a, t): i for i, (a, t) in
                             enumerate(zip(self.groups["arch"], self.groups["task"], strict=True))}
        self._config_index = {tuple(r): i for i, r in
                              enumerate(self.configs[CONFIG_KEY].itertuples(index=False))}
        # weight counts do not depend on n_train: (task, arch, depth, width) -> params_total
        self._sizes = {k[:4]: float(self.configs["params_total"][i])
                       for k, i in self._config_index.items()}

    @property
    def beyond(self) -> Beyond:
        """Where a configuration lies beyond its group's grid, and the drift it carries there
        (:class:`bayes_prune.beyond.Beyond`), kept until ``meta`` is replaced."""
        cached = self.__dict__.get("_beyond")
        if cached is None or cached.meta is not self.meta:
            cached = self._beyond = Beyond(self.meta, self.configs, self.n_draws)
        return cached

    # ------------------------------------------------------------------ I/O
    @classmethod
    def from_inference_data(cls, idata) -> Posterior:
        post = idata.posterior
        meta = json.loads(post.attrs["bayes_prune"])
        return cls(_flatten(post), meta, idata)

    @classmethod
    def load(cls, path: str | Path) -> Posterior:
        """Read a posterior written by :meth:`save` (or ``bayes-prune fit``); a file that is
        not a whole one (no ``sample_stats``, no diagnostics) is refused
        (:func:`bayes_prune.posterior_file.read`); ``"reference"`` reads the shipped reference
        posterior (:mod:`bayes_prune.reference`)."""
        if str(path) == "reference":
            from .reference import load

            return load()
        from .posterior_file import read

        post, _, meta = read(path)
        return cls(_flatten(post), meta)

    def save(self, path: str | Path) -> Path:
        """Write the posterior as ArviZ InferenceData NetCDF: to this writer's own temporary
        file beside ``path`` (:func:`bayes_prune.workers.temp_beside`), then renamed."""
        from .workers import temp_beside

        if self.idata is None:
            raise ValueError("this posterior was loaded from a file; it is already saved")
        path = Path(path)
        tmp = temp_beside(path)
        self.idata.to_netcdf(str(tmp), engine="h5netcdf")
        os.replace(tmp, path)
        return path

    @property
    def diagnostics(self) -> dict:
        return self.meta["diagnostics"]

    @property
    def approximate(self) -> str | None:
        """``None`` for a NUTS posterior; for ``fit --method pathfinder|advi``, a one-line
        warning naming the method and its Pareto k (> 0.7: the draws are unreliable)."""
        method = self.meta["settings"].get("method", "nuts")
        if method == "nuts":
            return None
        k = self.diagnostics.get("pareto_k")
        k = "not computed" if k is None or not np.isfinite(k) else \
            f"{k:.2f}" + (" > 0.7: unreliable" if k > 0.7 else "")
        return (f"APPROXIMATE posterior ({method}, Pareto k {k}): its bands are not NUTS's; "
                "refit without --method for the final answer")

    # -------------------------------------------------------------- queries
    def coefficients(self, arch: str, task: str, rng=None) -> dict[str, np.ndarray]:
        """Draws ``(draws,)`` of every coefficient of (arch, task), pooled if never fitted."""
        g = self._group_index.get((arch, task))
        if g is not None:
            theta = self.draws["theta"][:, g, :]
        else:
            self._check_group(arch, task)
            rng = np.random.default_rng(0) if rng is None else rng
            theta = self._pooled(arch, task, rng)
        return {c: theta[:, i] for i, c in enumerate(self.coefs)}

    def _check_group(self, arch: str, task: str) -> None:
        if arch not in self.archs or task not in self.tasks:
            raise UserError(
                f"({arch}, {task}) cannot be predicted: the posterior was fitted on "
                f"archs {', '.join(self.archs)} and tasks {', '.join(self.tasks)}, and a "
                "pair is predicted only when its arch and its task were both fitted")

    def _pooled(self, arch: str, task: str, rng) -> np.ndarray:
        """Draws ``(draws, K)`` of an unfitted pair's coefficients: per posterior draw of the
        fitted groups, the normal conditional of the crossed-pooling prior
        (:func:`~bayes_prune.coords.pooling_cov`) given them."""
        pri = self.meta["priors"]
        mean = np.array([pri["mu"]["mean"][c] for c in self.coefs])
        cov = pooling_cov(list(self.groups["arch"]) + [arch], list(self.groups["task"]) + [task],
                          *self._prior_scales(pri))
        n = len(self.groups)
        c_oo, c_no, c_nn = cov[:, :n, :n], cov[:, n, :n], cov[:, n, n]
        w = np.linalg.solve(c_oo, c_no[..., None])[..., 0]  # (K, G)
        resid = self.draws["theta"] - mean  # (draws, G, K)
        cond_mean = mean + np.einsum("kg,dgk->dk", w, resid)
        cond_sd = np.sqrt(c_nn - np.einsum("kg,kg->k", w, c_no))
        return cond_mean + cond_sd * rng.standard_normal(cond_mean.shape)

    def _prior_scales(self, pri: dict) -> tuple[list, ...]:
        """The prior's sd of ``mu`` and its arch, task and pair spreads, per coefficient."""
        return Priors.from_dict(pri).scales(self.coefs)

    def natural(self, arch: str, task: str) -> dict[str, np.ndarray]:
        """Draws of the law's coefficients on their natural scale for (arch, task): the joint
        law's ``gamma, p_prime, phi, psi, eps_up`` (for the variants: at the grid's centre
        n_train, depth and width), the dense law's ``a, alpha, b, beta, c_inf`` (``b`` at the
        group's mean depth), the ``curved`` variant's ``phi2, psi2`` and ``dense_depth``'s
        ``zeta``."""
        return self._natural(self.coefficients(arch, task), arch, task)

    def _natural(self, theta: dict, arch: str, task: str) -> dict[str, np.ndarray]:
        eps0, _ = self._eps0_ntest(arch, task)
        prune = prune_law(theta, self.centres, eps0, n_train=np.exp(self.centres.log_n),
                          log_err_pivot=self._pivot(arch, task),
                          log_n_centre=self._centre("n", arch, task))
        dense = dense_law(theta, self.centres, eps0, **self._dense_centres(arch, task))
        n = len(next(iter(theta.values())))
        out = {k: np.broadcast_to(v, (n,)) for k, v in prune.as_dict().items()}
        out.update({k: np.broadcast_to(v, (n,)) for k, v in dense.as_dict().items()
                    if k != "eta"})
        out.update({k: v for k, v in theta.items() if k in CURVATURE or k == ZETA})
        return out

    def identification(self, level: float = 0.9) -> pd.DataFrame:
        """How much the data narrowed each fitted group's coefficients
        (:func:`bayes_prune.coef_summary.identification`)."""
        return coef_summary.identification(self, level)

    def coefficient_table(self, level: float = 0.94) -> pd.DataFrame:
        """Posterior median, HDI and identification per fitted group and coefficient
        (:func:`bayes_prune.coef_summary.coefficient_table`)."""
        return coef_summary.coefficient_table(self, level)

    def compare(self, coef: str, a: tuple[str, str], b: tuple[str, str],
                level: float = 0.94) -> dict:
        """``P(coef_A > coef_B)`` under the posterior, with both medians and HDIs
        (:func:`bayes_prune.coef_summary.compare`)."""
        return coef_summary.compare(self, coef, a, b, level)

    def _noise(self, arch: str, task: str) -> tuple[np.ndarray, ...]:
        return tuple(self._scale(v, arch, task) for v in ("sigma", "sigma_seed", "tau"))

    def _scale(self, name: str, arch: str, task: str) -> np.ndarray | None:
        """The draws of a per-group scale (``sigma``, ``tau``...) for the group; for a pair
        never fitted, the groups' median per draw; ``None`` if the fit has no such scale."""
        if name not in self.draws:
            return None
        g = self._group_index.get((arch, task))
        return self.draws[name][:, g] if g is not None else np.median(self.draws[name], axis=1)

    def _pivot(self, arch: str, task: str) -> float:
        """The group's pivot error (:func:`~bayes_prune.coords.group_anchors`); the grid's for a
        pair never fitted."""
        g = self._group_index.get((arch, task))
        return self.centres.log_err_pivot if g is None else float(self.groups["log_err_pivot"][g])

    def _centre(self, axis: str, arch: str, task: str) -> float:
        """The group's mean log ``axis`` (``n``: about which the n_train variants act,
        :func:`~bayes_prune.coords.prune_law`; ``depth``: about which the dense law's ``zeta`` acts,
        :func:`~bayes_prune.coords.dense_law`); the grid's for a pair never fitted or a fit
        stored before groups had their own."""
        g, column = self._group_index.get((arch, task)), f"log_{axis}_centre"
        if g is None or column not in self.groups:
            return getattr(self.centres, f"log_{axis}")
        return float(self.groups[column][g])

    def _dense_centres(self, arch: str, task: str) -> dict:
        """Where the group's dense law is centred (:func:`~bayes_prune.coords.dense_centres`):
        its own mean log n_train and weight count; the grid's (no arguments) for a pair never
        fitted or a fit stored before the dense law was centred on each group."""
        g = self._group_index.get((arch, task))
        if g is None or self.meta["settings"].get("dense_centre") != "group":
            return {}
        return {k: float(v) for k, v in dense_centres(self.groups, g).items()}

    def _eps0_ntest(self, arch: str, task: str) -> tuple[float, float]:
        g = self._group_index.get((arch, task))
        if g is not None:
            return float(self.groups["eps0"][g]), float(self.groups["n_test"][g])
        same = self.groups[self.groups["task"] == task]
        return float(same["eps0"].iloc[0]), float(same["n_test"].median())

    def _params(self, rows: pd.DataFrame) -> np.ndarray:
        if "params_total" in rows and rows["params_total"].notna().all():
            return rows["params_total"].to_numpy(float)
        cols = ["task", "arch", "depth", "width"]
        codes, first = row_codes(rows, cols)  # a count per network
        sub = rows.iloc[first]
        sizes = np.array([self._sizes.get(k) or _family_params(k[1], k[0], k[2], k[3])
                          for k in zip(*(sub[c].tolist() for c in cols), strict=True)],
                         dtype=float)
        return sizes[codes]

    def predict_draws(self, rows: pd.DataFrame, band: str = "expected",
                      seed: int = 0, discrepancy: bool = True) -> np.ndarray:
        """Error draws ``(len(rows), draws)`` (float32) for the configurations in ``rows``;
        ``discrepancy=False`` leaves out the extrapolation discrepancy of rows beyond the grid
        (the law's own spread alone; every other draw is the same)."""
        out = np.empty((len(rows), self.n_draws), dtype=np.float32)

        def keep(i, draws):
            out[i] = draws

        self._each_chunk(rows, band, seed, keep, discrepancy)
        return out

    def _each_chunk(self, rows: pd.DataFrame, band: str, seed: int, fn,
                    discrepancy: bool = True) -> None:
        """Draw the errors of ``rows`` chunk by chunk, on threads, calling ``fn(i, draws)``
        with the chunk's row positions ``i`` and its draws ``(len(i), draws)``
        (:func:`bayes_prune.predict.each_chunk`)."""
        if band not in BANDS:
            raise UserError(f"unknown band {band!r}; choose {' or '.join(BANDS)}")
        rows = _check_rows(rows)
        for arch, task in rows[["arch", "task"]].drop_duplicates().itertuples(index=False):
            self._check_group(arch, task)
        groups = {}
        for g, (arch, task) in enumerate(rows.groupby(["arch", "task"], sort=False).indices):
            # float32 draws: plenty for error bands, and half the memory traffic
            theta = {k: v.astype(np.float32) for k, v in
                     self.coefficients(arch, task, np.random.default_rng([seed, g])).items()}
            eps0, n_test = self._eps0_ntest(arch, task)
            groups[arch, task] = Group(
                theta, tuple(v.astype(np.float32) for v in self._noise(arch, task)),
                self._scale("tau_m", arch, task),  # the fit's invariant scatter, if any
                eps0, n_test, self._pivot(arch, task), self._centre("n", arch, task),
                # the drift rates: one per draw, shared by every chunk of the group
                self.beyond.drift_rates(f"{arch}/{task}", np.random.default_rng([seed, g, 2])),
                f"{arch}/{task}", self._centre("depth", arch, task),
                self._dense_centres(arch, task))
        each_chunk(self, rows, self._params(rows), groups, band, seed, fn, discrepancy)

    def summary(self, rows: pd.DataFrame, level: float = 0.9, band: str = "expected",
                below: float | None = None) -> pd.DataFrame:
        """Per row: mean, median, HDI ``lower``/``upper`` at ``level``, with ``below`` the
        probability that the error is at most ``below`` (``p_below``), and the axes on which
        the row lies beyond its group's grid (``beyond``, :meth:`beyond_grid`)."""
        rows = _check_rows(rows)
        if not 0 < level < 1:
            raise UserError(f"level must be in (0, 1), got {level}")
        stats = np.empty((len(rows), 5))
        n = self.n_draws

        def summarise(i, draws):
            x = np.sort(draws, axis=1)
            lo, hi = hdi(x, level, presorted=True)
            stats[i, 0] = x.mean(axis=1, dtype=np.float64)
            stats[i, 1] = (x[:, (n - 1) // 2].astype(np.float64) + x[:, n // 2]) / 2
            stats[i, 2], stats[i, 3] = lo, hi
            if below is not None:
                stats[i, 4] = (x <= below).mean(axis=1)

        self._each_chunk(rows, band, 0, summarise)
        out = rows[list(QUERY_COLUMNS)].copy().reset_index(drop=True)
        out["mean"], out["median"], out["lower"], out["upper"] = stats[:, :4].T
        out["level"], out["band"] = level, band
        if below is not None:
            out["p_below"] = stats[:, 4]
        out["beyond"] = self.beyond_grid(rows)
        return out

    def beyond_grid(self, rows: pd.DataFrame) -> pd.Series:
        """Per row: the axes on which it lies beyond its group's grid
        (:meth:`bayes_prune.beyond.Beyond.axes`), ``""`` inside it,
        :data:`bayes_prune.beyond.NEVER_FITTED` for a pair without a grid."""
        return self.beyond.axes(rows)

    def design(self, target_error: float, prob: float, candidates: pd.DataFrame | None = None,
               band: str = "prediction") -> pd.DataFrame:
        """Configurations whose error is at most ``target_error`` with probability at least
        ``prob``, fewest non-zero weights first. ``candidates`` defaults to every fitted
        configuration at densities 0.8^r, r = 0..40. Non-zero weights are the non-prunable
        ones plus ``density x`` the prunable ones."""
        if not 0 < prob < 1:
            raise UserError(f"--prob must be in (0, 1), got {prob}")
        if not 0 < target_error < 1:
            raise UserError(f"--target-error must be in (0, 1), got {target_error}")
        if candidates is None:
            dens = pd.DataFrame({"density": 0.8 ** np.arange(41)})
            candidates = self.configs[CONFIG_KEY + ["params_total", "params_prunable"]].merge(
                dens, how="cross")
        cand = _check_rows(candidates).reset_index(drop=True)
        draws = self.predict_draws(cand, band=band)
        cand["p_meets"] = (draws <= target_error).mean(axis=1)
        cand["median"] = np.median(draws, axis=1)
        total = self._params(cand)
        prunable = cand["params_prunable"].to_numpy(float) if "params_prunable" in cand else total
        cand["params_total"] = total
        cand["params_nonzero"] = np.round(total - prunable + cand["density"] * prunable)
        ok = cand[cand["p_meets"] >= prob]
        return ok.sort_values(["params_nonzero", "p_meets"], ascending=[True, False]) \
            .reset_index(drop=True)

    def suggest(self, candidates: pd.DataFrame, goal, n: int = 10, budget: float | None = None,
                cost_model=None, seed: int = 0) -> tuple[pd.DataFrame, dict]:
        """The next runs to train for ``goal`` (a :class:`bayes_prune.suggest.Goal`), chosen
        greedily among ``candidates`` (:func:`bayes_prune.suggest.candidate_runs`) by expected
        variance reduction per unit cost: see :mod:`bayes_prune.suggest`. Returns the picks
        in order and a summary (the goal's sd before and after, the cost model; for a design
        goal ``design_reach``: how often a searched configuration reaches the target, and the
        nearest one, :func:`bayes_prune.suggest.design_reach`)."""
        from .suggest import suggest

        return suggest(self, candidates, goal, n=n, budget=budget, cost_model=cost_model,
                       seed=seed)


def _flatten(post) -> dict[str, np.ndarray]:
    """(chain, draw, ...) -> (chain x draw, ...) for every variable."""
    return {v: post[v].to_numpy().reshape(-1, *post[v].shape[2:]) for v in post.data_vars}


def _check_rows(rows: pd.DataFrame) -> pd.DataFrame:
    missing = [c for c in QUERY_COLUMNS if c not in rows]
    if missing:
        raise UserError(f"query needs column(s) {', '.join(missing)}")
    d = rows["density"].to_numpy(float)
    if np.any((d <= 0) | (d > 1)) or np.any(~np.isfinite(d)):
        raise UserError(f"density must be in (0, 1], got {d[(d <= 0) | (d > 1)][:3].tolist()}")
    for c in ("depth", "width", "n_train"):
        v = rows[c].to_numpy(float)
        if np.any(v <= 0):
            raise UserError(f"{c} must be positive, got {v[v <= 0][:3].tolist()}")
    return rows.reset_index(drop=True)


@functools.lru_cache(maxsize=65536)  # a query of 10,000 rows asks for thousands of networks
def _family_params(arch: str, task: str, depth: int, width: int) -> float:
    from .families import FAMILIES, param_counts

    if arch not in FAMILIES:
        raise UserError(f"the weight count of {arch}/{task} depth={depth} width={width} is "
                        "unknown (not a fitted configuration, not a known family): give "
                        "params_total (--params-total, or a params_total column)")
    return float(param_counts(arch, task, int(depth), int(width))[0])
