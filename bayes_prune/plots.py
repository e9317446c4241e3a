"""Plots: arrays in, matplotlib ``Axes`` out; nothing is computed here that a query answers.

Every function draws on ``ax`` (a new figure's axes when ``None``), returns it, and never calls
``show()`` or saves; the CLI and notebooks save. Error and density live on log axes, where the
law's power-law region is a straight line.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import matplotlib.ticker as mticker
import numpy as np
import pandas as pd

__all__ = ["curves", "collapse", "forest", "calibration", "by_density"]

_MARKERS = "o^sDvP*X"


def _plain_log_y(ax):
    # Errors span one or two decades: label them 0.2, 0.5 rather than 2 x 10^-1.
    fmt = mticker.FuncFormatter(lambda v, _: f"{v:g}")
    ax.yaxis.set_major_formatter(fmt)
    ax.yaxis.set_minor_formatter(fmt)


def _axes(ax):
    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 4.0), layout="constrained")
    return ax


def curves(points: pd.DataFrame, band: pd.DataFrame | None = None, ax=None, color="C0",
           label: str | None = None, random_error: float | None = None):
    """Error vs density of one configuration: measured points per seed and a posterior band.

    Parameters
    ----------
    points : rows of the error grid (columns ``density``, ``test_error``, ``seed``).
    band : optional, columns ``density``, ``median`` and any of ``lower_50``, ``upper_50``,
        ``lower_90``, ``upper_90`` (quantiles of the predicted error at each density).
    random_error : draws the random-guess level as a dotted line when given.
    """
    ax = _axes(ax)
    if band is not None:
        b = band.sort_values("density")
        for level, alpha in ((90, 0.18), (50, 0.35)):
            if f"lower_{level}" in b:
                ax.fill_between(b["density"], b[f"lower_{level}"], b[f"upper_{level}"],
                                color=color, alpha=alpha, lw=0,
                                label=f"{level} % band" if label is None else None)
        ax.plot(b["density"], b["median"], color=color, lw=1.5,
                label="posterior median" if label is None else label)
    for i, (seed, rows) in enumerate(points.groupby("seed")):
        ax.scatter(rows["density"], rows["test_error"], s=12, color=color, edgecolor="k",
                   linewidth=0.3, marker=_MARKERS[i % len(_MARKERS)], zorder=3,
                   label=f"seed {seed}" if label is None else None)
    if random_error is not None:
        ax.axhline(random_error, color="0.5", ls=":", lw=1, label="random guessing")
    ax.set(xscale="log", yscale="log", xlabel="density d (fraction of weights left)",
           ylabel="test error")
    _plain_log_y(ax)
    ax.legend(fontsize="small")
    return ax


def collapse(log_mstar: np.ndarray, error: np.ndarray, color_by: np.ndarray,
             color_label: str = "width", curve: tuple[np.ndarray, np.ndarray] | None = None,
             ax=None):
    """Error vs the invariant ``m* = depth^phi width^psi density``: with the fitted ``phi, psi``
    every configuration of a group falls on one curve (up to its dense plateau).

    ``log_mstar``, ``error``, ``color_by`` have one entry per point; ``curve`` is an optional
    ``(m*, error)`` pair drawn as the law's median curve.
    """
    ax = _axes(ax)
    values = np.unique(color_by)
    cmap = plt.get_cmap("viridis", max(len(values), 2))
    for i, v in enumerate(values):
        sel = color_by == v
        ax.scatter(np.exp(log_mstar[sel]), error[sel], s=8, color=cmap(i), alpha=0.7,
                   label=f"{color_label} {v}")
    if curve is not None:
        ax.plot(curve[0], curve[1], color="k", lw=1.5, label="law (posterior median)")
    ax.set(xscale="log", yscale="log", xlabel="m* = depth^phi x width^psi x density",
           ylabel="test error")
    _plain_log_y(ax)
    ax.legend(fontsize="small", ncol=2)
    return ax


def forest(intervals: Mapping[str, Sequence[float]], coef: str, level: float = 0.94, ax=None):
    """Forest plot of one coefficient across groups: ``intervals`` maps a group label to
    ``(lower, median, upper)`` of its posterior at ``level``."""
    ax = _axes(ax)
    labels = list(intervals)
    y = np.arange(len(labels))[::-1]
    lo, med, hi = (np.array([intervals[k][j] for k in labels]) for j in range(3))
    ax.errorbar(med, y, xerr=[med - lo, hi - med], fmt="o", color="C0", capsize=3,
                label=f"median and {level:.0%} HDI")
    ax.set_yticks(y, labels)
    ax.set_ylim(-0.7, len(labels) - 0.3)
    ax.set(xlabel=coef, title=f"{coef} by (architecture / task)")
    ax.legend(fontsize="small")
    return ax


def calibration(nominal: np.ndarray, empirical: Mapping[str, np.ndarray], ax=None,
                envelope: np.ndarray | None = None):
    """Nominal vs empirical coverage of held-out points, one line per method; a calibrated
    method lies on the diagonal, or, on a few configurations whose points share their
    uncertainty, inside ``envelope`` (``(2, levels)``: the 5th and 95th percentiles of what a
    calibrated band would cover of the same rows), shaded when given."""
    ax = _axes(ax)
    if envelope is not None:
        ax.fill_between(nominal, envelope[0], envelope[1], color="0.85",
                        label="a calibrated band, 5-95 %")
    ax.plot([0, 1], [0, 1], color="0.5", ls="--", lw=1, label="nominal")
    for i, (name, cov) in enumerate(empirical.items()):
        ax.plot(nominal, cov, marker="o", color=f"C{i}", label=name)
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="nominal coverage of the central band",
           ylabel="fraction of held-out points inside", aspect="equal")
    ax.legend(fontsize="small")
    return ax


def by_density(rows: Sequence[Mapping], level: float = 0.9, ax=None):
    """Where along the curve held-out points miss: per interval of density (``rows`` as
    :func:`bayes_prune.evaluate.by_density` gives them; drawn from the dense point on the left
    to the most pruned on the right), the fraction inside the band as a bar against its nominal
    ``level``, and the mean log miss (``log measured - log predicted``) above each bar."""
    ax = _axes(ax)
    rows = list(rows)[::-1]
    x = np.arange(len(rows))
    ax.bar(x, [r["coverage_90"] for r in rows], color="C0", width=0.7)
    ax.axhline(level, color="0.5", ls="--", lw=1, label=f"nominal {level:.0%}")
    for xi, r in zip(x, rows, strict=True):
        ax.annotate(f"{r['log_miss']:+.2f}", (xi, r["coverage_90"]), ha="center",
                    va="bottom", fontsize="small")
    ax.set_xticks(x, [r["density"] for r in rows], rotation=30)
    ax.set(ylim=(0, 1.15), xlabel="density interval (dense on the left)",
           ylabel=f"fraction inside the {level:.0%} band")
    ax.set_title("above each bar: mean log(measured / predicted)", fontsize="small")
    ax.legend(fontsize="small", loc="lower left")
    return ax
