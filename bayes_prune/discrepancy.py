"""The extrapolation discrepancy: how far the law strays beyond a group's grid, measured inside
the grid by nested least-squares splits (seconds, numpy and scipy only). :mod:`bayes_prune.fit`
stores it with the posterior, :class:`bayes_prune.posterior.Posterior` draws its offsets for
configurations outside the grid, and :mod:`bayes_prune.evaluate` scores the result; it sits
below all three, so none of them imports another to reach it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from . import lsq
from .grid import CONFIG_KEY, GROUP_KEY, SIZE_AXES, random_errors
from .law import log_dense_error, log_eq1, log_invariant, slope_eq1

__all__ = ["extrapolation_discrepancy", "MIN_CONFIGS"]

MIN_CONFIGS = 6  # least squares fits the joint law's 5 and the envelope's 6


def extrapolation_discrepancy(grid: pd.DataFrame) -> dict[str, dict]:
    """How far the law strays when it extrapolates beyond its grid, measured inside ``grid``.

    A law fitted on smaller networks (or fewer data) and asked about larger ones misses by more
    than the scatter it sees in its fitting set: its coefficients drift with scale. Per
    (arch, task) group, along each of ``depth``, ``width`` and ``n_train``
    (:data:`bayes_prune.grid.SIZE_AXES`) and at each cut that keeps at least two and half of
    the axis' values (and not all) on the fitted side, fit the paper's least squares (joint law
    and dense envelope) on the configurations up to the cut, and measure every configuration
    in the law's two own directions:

    - ``v``: its mean log dense error (round 0) minus the dense law's;
    - ``h``: the shift of its invariant ``log m*`` that best fits its pruned points (given
      each run's measured dense error): ``h = sum(s r) / sum(s^2)`` with ``r`` the log
      residuals and ``s`` the law's local slope in ``log m*``. A shift moves the power-law
      region and the transitions, never the two plateaus.

    The fitted configurations' ``h`` and ``v`` scatter by the noise and the configuration
    scatter the posterior band already has; those beyond the cut scatter by more. Per axis,
    with ``d`` the log of their value over the cut, ``k_h^2 = sum(h^2 - mean(h_in^2)) /
    sum(d^2)`` over the axis' splits (``h_in`` of the fitted configurations; 0 if negative),
    and ``k_v`` the same of ``v``: the axes drift at their own rates (on the reference grids,
    depth's is often the largest). A configuration outside its group's grid then gets the
    offsets ``N(0, sum_a (k_v,a d_a)^2)`` on its log dense error and ``N(0, sum_a (k_h,a
    d_a)^2)`` on its log invariant, on top of its posterior band, ``d_a`` being its log
    excess over the grid's largest value of axis ``a``
    (:class:`bayes_prune.posterior.Posterior`).
    Least squares has no priors: where the dense law is poorly pinned (few sizes below the
    cut) its misses, and so ``k_v``, overstate the posterior's.

    Returns ``{"arch/task": {"max_depth", "max_width", "max_n_train", "sd_dense",
    "sd_invariant", "configurations", "splits"}}``, ``sd_*`` being ``{axis: k}`` (per unit of
    log excess); an axis without a split (too few values or configurations) is listed in
    ``unmeasured`` and inherits a rate measured elsewhere (:func:`_inherit`, recorded in
    ``inherited``).
    """
    out = {}
    for key, rows in grid.groupby(GROUP_KEY, sort=True):
        info = {f"max_{a}": float(rows[a].max()) for a in SIZE_AXES}
        info.update(sd_dense={}, sd_invariant={}, configurations=0, splits=0)
        for axis in SIZE_AXES:
            sums = np.zeros(3)  # sum h^2 - mean(h_in^2), the same of v, sum d^2
            values = np.unique(rows[axis].to_numpy(float))
            # at least two values, and half of them, fitted: a law fitted on a sliver of the
            # grid misses by its coefficients' uncertainty, which the posterior has already
            for cut in values[max(2, (len(values) + 1) // 2) - 1:-1]:
                small, large = rows[rows[axis] <= cut], rows[rows[axis] > cut]
                if len(small[CONFIG_KEY].drop_duplicates()) < MIN_CONFIGS:
                    continue
                try:
                    joint, dense = lsq.fit_joint_and_dense(small)
                except (ValueError, FloatingPointError):
                    continue
                h_in, v_in, _ = _config_misses(small, joint, dense)
                h, v, first = _config_misses(large, joint, dense)
                d2 = np.log(large[axis].to_numpy(float)[first] / cut) ** 2
                sums += [np.sum(h**2) - len(h) * np.mean(h_in**2),
                         np.sum(v**2) - len(v) * np.mean(v_in**2), np.sum(d2)]
                info["configurations"] += len(h)
                info["splits"] += 1
            for name, x in (("sd_invariant", sums[0]), ("sd_dense", sums[1])):
                info[name][axis] = float(np.sqrt(max(x, 0.0) / sums[2])) if sums[2] > 0 else 0.0
            if sums[2] == 0:
                info.setdefault("unmeasured", []).append(axis)
        out["/".join(key)] = info
    return _inherit(out)


def _inherit(out: dict[str, dict]) -> dict[str, dict]:
    """Rates for the axes a group's grid cannot split (fewer than three values, or too few
    configurations below a cut): not 0, which would claim that the law does not drift along
    them, but the largest rate measured along that axis in the other groups of the fit, else
    the largest rate measured along the group's other axes; 0 only when the fit measured
    none. ``inherited`` records ``{axis: "axis of group" | "other axes"}``."""
    for info in out.values():
        for axis in info.get("unmeasured", []):
            others = [i for i in out.values() if axis not in i.get("unmeasured", [])]
            if others:
                source = f"{axis} of other groups"
                pick = {name: max(i[name][axis] for i in others)
                        for name in ("sd_dense", "sd_invariant")}
            else:
                own = [a for a in SIZE_AXES if a not in info.get("unmeasured", [])]
                source = "other axes" if own else "none measured"
                pick = {name: max((info[name][a] for a in own), default=0.0)
                        for name in ("sd_dense", "sd_invariant")}
            for name, k in pick.items():
                info[name][axis] = k
            info.setdefault("inherited", {})[axis] = source
    return out


def _config_misses(rows: pd.DataFrame, joint: lsq.LsqFit, dense
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per configuration of ``rows``: its best shift ``h`` of log m*, its dense miss ``v`` (see
    :func:`extrapolation_discrepancy`) and the position of its first row."""
    law = joint.law
    log_obs = np.log(lsq.observed_errors(rows))
    eps_np = lsq.run_dense_errors(rows)
    log_m = log_invariant(rows["density"].to_numpy(float), rows["depth"].to_numpy(float),
                          rows["width"].to_numpy(float), law.phi, law.psi)

    eq1 = (log_m, np.log(eps_np), np.log(law.eps_up), law.gamma, np.log(law.p_prime))
    r, slope = log_obs - log_eq1(*eq1), slope_eq1(*eq1)
    log_dense = log_dense_error(rows["params_total"].to_numpy(float),
                                rows["n_train"].to_numpy(float), dense,
                                random_errors(rows).to_numpy(float))
    cfg = rows.groupby(CONFIG_KEY, sort=False).ngroup().to_numpy()
    h = np.bincount(cfg, slope * r) / np.maximum(np.bincount(cfg, slope**2), 1e-12)
    dense_pt = rows["round"].to_numpy() == 0
    n_dense = np.bincount(cfg[dense_pt], minlength=len(h))
    v = np.bincount(cfg[dense_pt], (log_obs - log_dense)[dense_pt], minlength=len(h)) \
        / np.maximum(n_dense, 1)  # 0 for a configuration without a dense point
    return h, v, np.unique(cfg, return_index=True)[1]
