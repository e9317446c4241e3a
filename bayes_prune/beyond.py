"""Where a configuration lies beyond its group's grid, and the drift it carries there: the
part of :class:`bayes_prune.posterior.Posterior` that reads the extrapolation discrepancy a fit
stored (:mod:`bayes_prune.discrepancy`). Numpy only, like every query.

A configuration's distance beyond the grid is its log excess over the group's nearest trained
configuration (:func:`bayes_prune.grid.log_excess`); its offsets have sd ``sqrt(sum_a (k_a
d_a)^2)``, each posterior draw taking its rates ``k_a`` from one group of the fit
(:meth:`Beyond.drift_rates`), and the invariant's, above its median, the lean's variance too.
The nearest trained configuration is chosen by the dense and invariant rates alone
(:meth:`Beyond.drift_weights`); ``suggest`` splits a goal's discrepancy over the axes by the
lean too.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .drift_pool import same_arch
from .grid import CONFIG_KEY, GROUP_KEY, LEAN, RATES, SIZE_AXES, log_excess

NEVER_FITTED = "pair never fitted"  # Beyond.axes' answer for an (arch, task) with no grid


class Beyond:
    """The grids of a posterior's groups and the discrepancy stored beside them. ``meta`` is
    the posterior's (its ``discrepancy`` read at each call, so a caller may replace it),
    ``configs`` its fitted configurations, ``n_draws`` its draws."""

    def __init__(self, meta: dict, configs: pd.DataFrame, n_draws: int):
        self.meta, self.n_draws = meta, n_draws
        # each group's fitted (depth, width, n_train): what lies beyond them
        self.trained = {f"{a}/{t}": part[list(SIZE_AXES)].to_numpy(float) for (a, t), part
                        in configs.groupby(GROUP_KEY)}

    def drift_rates(self, group: str, rng) -> dict | None:
        """The group's drift rates ``{"sd_dense"|"sd_invariant"|"skew_invariant": {axis: k}}``
        (:data:`bayes_prune.grid.RATES`), ``k`` of shape
        ``(draws,)``: per draw, the rates of one group of the fit, the group itself with its
        pooling share, the rest shared by the population as
        :func:`bayes_prune.drift_pool.pool` weighs it: the other groups of its architecture
        with ``arch_share`` of it, every group that measured the axis (itself included) alike
        with the remainder (all of it in fits stored before ``arch_share``). The band then
        carries the population's spread of drifts, not only its mean square. The lean
        (``skew_invariant``) is the group's one pooled number for every draw, ``(1,)``, never
        below the population's (:func:`bayes_prune.drift_pool.pool`); a fit stored before it
        was measured has 0. Fits stored before the rates were pooled give their one rate,
        ``(1,)``. ``None`` without a discrepancy."""
        disc = self.meta.get("discrepancy") or {}
        info = disc.get(group)
        if not info:
            return None
        out = {name: {} for name in RATES}
        for a in info["sd_dense"]:
            measured = [g for g, i in disc.items() if i.get("evidence", {}).get(a, 0) > 0]
            if "own" not in info or not measured:
                for name in out:
                    out[name][a] = np.array([info.get(name, {}).get(a, 0.0)], np.float32)
                continue
            share = info["pooled"].get(a, 0.0)
            # the population's part: everyone alike, or (arch_share) the same architecture's
            # other groups first (bayes_prune.drift_pool.pool)
            arch = info.get("arch_share", {}).get(a, 0.0)
            same = same_arch(measured, group)
            w = np.array([share * (g == group) + (1 - share) * (
                (1 - arch) / len(measured) + (arch / len(same) if g in same else 0.0))
                for g in measured])
            pick = rng.choice(len(measured), self.n_draws, p=w / w.sum())
            for name in out:  # (a fit stored before the skew was measured has none)
                out[name][a] = np.array([disc[g]["own"].get(name, {}).get(a, 0.0)
                                         for g in measured], np.float32)[pick]
            if LEAN in info:  # the lean: the group's own, never below the population's
                out[LEAN][a] = np.array([info[LEAN][a]], np.float32)
        return out

    def drift_weights(self, group: str, lean: bool = False) -> np.ndarray | None:
        """The group's squared drift rate per size axis, dense and invariant summed (``None``
        without a stored discrepancy): how much a unit of log excess on each axis costs.
        ``lean=True`` adds half the lean's square, the mean square the lean adds to the
        invariant's offset (it widens half the draws): the offsets' whole mean square per unit
        of log excess, which ``suggest`` splits a goal's discrepancy variance by."""
        info = (self.meta.get("discrepancy") or {}).get(group)
        return None if not info else np.array(
            [info["sd_dense"].get(a, 0.0) ** 2 + info["sd_invariant"].get(a, 0.0) ** 2
             + (0.5 * info.get(LEAN, {}).get(a, 0.0) ** 2 if lean else 0.0)
             for a in SIZE_AXES])

    def excess(self, group: str, sizes: np.ndarray,
                trained: np.ndarray | None = None) -> np.ndarray:
        """The log excess of configurations ``sizes`` (rows of depth, width, n_train) over
        the group's nearest fitted configuration (or of ``trained``, a grid grown by
        ``suggest``; :func:`bayes_prune.grid.log_excess`), near by the group's drift weights
        (:meth:`drift_weights`; equal without them)."""
        return log_excess(sizes, self.trained[group] if trained is None else trained,
                          self.drift_weights(group))

    def discrepancy_var(self, group: str, uniq, drift: dict | None):
        """The model-discrepancy of the configurations ``uniq`` (``CONFIG_KEY`` values and
        weight count, as the posterior draws them) that lie outside their group's grid:
        ``(positions, dense variance, invariant variance, invariant skew variance)``, float32
        of shape ``(len(positions), 1 or draws)``, ``sum_a (k_a d_a)^2`` over the axes ``a``
        (depth, width, n_train), ``d_a`` the log excess over the nearest fitted configuration
        (:meth:`excess`) and ``k_a`` the rates ``drift`` (:meth:`drift_rates`), one per
        :data:`bayes_prune.grid.RATES`. The invariant's offsets have the invariant variance
        below their median and that plus the skew variance above it
        (:mod:`bayes_prune.discrepancy`). ``None`` if none is outside (or the fit was made
        without the discrepancy)."""
        info = (self.meta.get("discrepancy") or {}).get(group)
        if not info or drift is None:
            return None
        ex = self.excess(group, np.array([[k[CONFIG_KEY.index(a)] for a in SIZE_AXES]
                                           for k in uniq], float))
        d = {a: ex[:, SIZE_AXES.index(a)] for a in info["sd_dense"]}
        out = np.flatnonzero(np.any([x > 0 for x in d.values()], axis=0))
        if not len(out):
            return None
        d2 = np.stack([d[a][out] ** 2 for a in d], axis=1).astype(np.float32)
        # one column when every rate is one number, else one per draw
        m = max(len(drift[name][a]) for name in drift for a in d)
        return (out, *(d2 @ np.stack([np.broadcast_to(drift[name][a], (m,)) ** 2 for a in d])
                       for name in RATES))

    def axes(self, rows: pd.DataFrame) -> pd.Series:
        """Per row: the axes (of ``depth``, ``width``, ``n_train``) on which it lies beyond
        the nearest fitted configuration of its (arch, task) group (:meth:`excess`),
        comma-separated; ``""`` inside the grid (some fitted configuration is at least as
        large on every axis), :data:`NEVER_FITTED` for a pair without a grid. An
        extrapolation: its band carries the discrepancy the fit measured (when stored), and on
        the reference extrapolation sets such bands under-cover."""
        sizes = rows[list(SIZE_AXES)].to_numpy(float)
        over = np.zeros(sizes.shape, bool)
        never = np.zeros(len(rows), bool)
        for (arch, task), idx in rows.groupby(GROUP_KEY, sort=False).indices.items():
            group = f"{arch}/{task}"
            if group not in self.trained:  # a pair never fitted: no grid at all
                never[idx] = True
            else:
                over[idx] = self.excess(group, sizes[idx]) > 0
        # one label per pattern of axes beyond (2^3 of them), picked per row: a Python loop
        # over the rows took a third of a 10,000-row summary
        labels = np.array([",".join(a for k, a in enumerate(SIZE_AXES) if code >> k & 1)
                           for code in range(1 << len(SIZE_AXES))] + [NEVER_FITTED], dtype=object)
        code = over @ (1 << np.arange(len(SIZE_AXES)))
        code[never] = len(labels) - 1
        return pd.Series(labels[code], index=range(len(rows)), dtype=object)
