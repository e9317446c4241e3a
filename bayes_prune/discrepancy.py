"""The extrapolation discrepancy: how far the law strays beyond a group's grid, measured inside
the grid by nested least-squares splits (seconds, numpy and scipy only). :mod:`bayes_prune.fit`
stores it with the posterior, :class:`bayes_prune.posterior.Posterior` draws its offsets for
configurations outside the grid, and :mod:`bayes_prune.evaluate` scores the result; it sits
below all three, so none of them imports another to reach it.

Why this form. A grid's likelihood cannot tell how the law drifts beyond the grid's largest
configurations: within its range the fitted law absorbs whatever drift there is. Drift shows
only when a law fitted on part of the sizes predicts the rest, so it is measured that way, by
nested splits, as a variance per axis (the law's miss grows with the log distance beyond the
grid). It is zero-mean: the misses' sign is not consistent (on the reference grids, a law fitted
on depths 1-2 misses depth 3 with a negative shift of ``log m*`` for most MLP configurations, and
the same law extrapolated further in width with a positive one). The rates are pooled across
(arch, task) groups like every other coefficient: a group's squared rate is a precision-weighted
mean of its own measurement and the population's (:func:`bayes_prune.drift_pool.pool`), so a
group whose grid cannot split an axis, or whose grid stops where others' go on, inherits what
the other groups
measured, with their spread; a group with large configurations of its own learns its own
drift. The rates are computed with the fit rather than sampled in it: they come from least
squares on held-back parts of the grid, which the model's likelihood never sees, and they cost
seconds.

Why the top cut counts on its own. Averaged over every cut, a rate is dominated by the inner
cuts, which have the most configurations beyond them; but the drift grows towards the top of
the scale, where extrapolations start. On the reference grids the configurations beyond the
fitting grids' top (the extrapolation sets) missed by invariant shifts of +0.4 to +1.4 where
the inner cuts' misses were -0.2 to +0.3 at like distances. So an axis' rate is the larger of
the all-cut average and the rate of its highest measured cut alone. Measured (experiments/README,
"The drift nearest the edge"): on the top-corner split it raised the worst group's 90 %
coverage from 65.9 to 74.5 % and lowered the summed lpd of the three groups that already
over-covered (6.61 -> 5.89 in all); leave-group-out 90 % coverage went from 69.2 / 89.0 / 86.9 /
65.3 % to 79.1 / 92.1 / 90.3 / 68.0 % (MNIST-1D MLP, Fashion MLP, MNIST-1D CNN, Fashion CNN).
A top cut's configurations often lie beyond the fitted side on two axes at once; each axis'
rate is charged with the whole miss, so a configuration beyond the grid on both axes gets a
wider band than its measured misses alone would give.

How much a group's own rate weighs. Pooling is a precision-weighted mean: a group's own squared
rate weighs as much as the evidence behind it, ``sum d^2`` over the configurations that measured
it. Where an axis' rate is its top cut's, only the top cut's configurations measured it, so only
their evidence counts; counting every cut's (the rule before) let the inner cuts, whose rate
was not used, vouch for the top cut's. An axis with one cut is unchanged, so the top-corner
split, where the discrepancy's other choices were settled, scores the same to the last digit
and cannot settle this one; it rests on the argument, and on the split it is reported on
(experiments/README, "Whose evidence weighs a rate"). In the leave-group-out splits it moves
one held-out group's weight, the MNIST-1D MLP's in width (its top cut holds a sixth of the
evidence; share 0.87 -> 0.52): 90 % coverage 79.1 / 92.1 / 92.6 / 67.3 % -> 86.6 / 92.1 /
92.6 / 67.3 % (MNIST-1D MLP, Fashion MLP, MNIST-1D CNN, Fashion CNN). Where a grid holds its
extrapolation set, the top cuts of depth and width see one or two configurations (evidence
0.16-0.17 against 3-12 for all cuts), so those groups' own top rates now weigh 4 % against
the population's.

Why the band leans towards pruning better. The drift's sign is not consistent inside the grids,
but at the top of the scale it is: a law fitted below an axis' top cut predicts the
configurations beyond it too high an error (``h > 0``, they prune better) along width in every
reference group, along depth in three of four (measured on all eight reference CSVs) (top-cut
slopes of ``h`` over ``d``, depth / width: Fashion CNN 3.9 / 2.2, MNIST-1D CNN 1.6 / 1.1,
MNIST-1D MLP 0.6 / 1.3, Fashion MLP -0.2 / 0.4). A mean shift by that slope was measured and
rejected (experiments/README, "A signed drift"): it moved the centre of groups whose top corner
does not drift. So the slope widens the band instead, on that side only: the invariant's offset
is a two-piece normal, of sd ``sqrt(sum_a (k_a d_a)^2)`` below its median and ``sqrt(sum_a (k_a
d_a)^2 + (s_a d_a)^2)`` above it, with ``s_a`` (``skew_invariant``) from the positive part of
each group's top-cut signed slope ``sum((h - mean h_in) d) / sum(d^2)``: pooled like the rates,
with the same shares, but never below the population's root mean square, and one number for
every draw. The floor because the lean shows above a grid's sizes, where its own splits cannot
look: the Fashion CNN's fitting grid shows none at its top cut (its own slope 0.1 in depth),
its depth-4 networks 3.9 per log unit. In half the draws (the normal below 0) the offset is the
one it was, in the other half it is larger: each draw's error is the same or lower, so the band
reaches further towards lower error while its side towards higher error barely moves, and the
median moves only as far as the draws' other uncertainty lets it. Settled on the top-corner
split, by a rule fixed beforehand (the narrowest group's 90 % coverage rises, no group's falls;
the Fashion CNN's fell by 0.1 points, one held-out point of 1,108, and was let pass) and no
scale tuned (the slopes as measured): 90 % coverage (MNIST-1D MLP, Fashion MLP, MNIST-1D CNN,
Fashion CNN) 98.6 / 99.4 / 74.7 / 98.5 % -> 98.6 / 99.4 / 82.6 / 98.4 % with the floor (78.1 %
for the MNIST-1D CNN pooled without it), lpd summed 5.91 -> 5.50 (5.61). Reported on leave-
group-out (the same fits): 86.6 / 92.1 / 92.6 / 67.3 % -> 99.1 / 98.0 / 96.6 / 93.3 %, 50 %
bands 31.1 / 44.0 / 38.6 / 27.3 % -> 49.9 / 55.0 / 48.3 / 34.7 %, lpd 6.30 -> 6.54 summed; on
the far sets the 90 % coverage is unchanged (94.0-100 %), lpd 6.93 -> 6.52 summed
(experiments/README, "The band leans towards pruning better", which also says which of these
sets were looked at before the choice).

Why an architecture's groups first (the default since 2026-12-07). The model pools every
coefficient through its architecture and its task (:mod:`bayes_prune.model`); the drift is
pooled so too (``arch_pool``): a group's population is the mean square of the *other* groups of
its architecture, shrunk to everyone's by one pseudo-group (:data:`ARCH_WEIGHT`), and each
draw's mixture of groups is weighed the same way; a group alone in its architecture (a ResNet,
a ViT) has everyone's. On the top-corner split it passed a rule fixed beforehand (the narrowest
group's 90 % coverage does not fall, none falls below 85 %, summed lpd rises): 98.6 / 99.4 /
82.6 / 98.4 % -> 97.8 / 99.0 / 88.5 / 99.2 % (MNIST-1D MLP, Fashion MLP, MNIST-1D CNN, Fashion
CNN), lpd 5.50 -> 5.69. It was first held back by a reported band it made too narrow: fitted on
the four fitting grids, which then borrowed nothing, the MNIST-1D MLP's far set fell from 91.9
to 81.7 %. Once such a fit borrows its own groups' reference measurements ("A group the grid
holds", below), that band is 98.8 % with it, and no reported band falls below 85 % (the
lowest, that fit's MNIST-1D MLP extrapolation set, 97.1 -> 88.7 %); so the settling rule
decides. What it costs on the reported splits: leave-group-out's 90 % bands 99.1 / 97.8 / 94.9
/ 94.0 % -> 95.9 / 97.1 / 98.9 / 98.0 % (the CNN groups now wider than needed, the MLP groups
less so), lpd 6.53 both (experiments/README, "An architecture's groups first"). Three forms
for one part alone were measured on the same split and not adopted (experiments/README, "Two
narrower leans"): the lean alone by architecture (``arch_pool="lean"``, lpd 5.50 -> 5.50), the
population's lean scaled to the group's own pooled rate (``lean_relative``, the narrowest
group 82.6 -> 81.9 %), and the rates alone by architecture (``arch_pool="rates"``, passing at
87.5 %, lpd 5.65, below the whole layer's 88.5 %, 5.69).

A fit borrows the reference groups' drift (``borrow``; ``fit``'s default, ``fit
--no-borrow-drift`` to leave it out). A grid of one group (a user's own, most often) has no
other group to learn drift from, and its own nested splits see only the bottom of its scale.
Borrowing, the population it pools with includes the shipped reference groups it does not hold
itself (:data:`REFERENCE_GROUPS`, their own rates measured on all eight reference CSVs), as if
they had been fitted beside it: a group's rate is its own measurement shrunk toward that
population by its evidence, and each posterior draw takes its rates from one member. A fit of
the reference grids borrows nothing. The price is in ``suggest``: the borrowed drifts, 0.2 to
3.5 per log unit, make a candidate's simulated measurement beyond the grid heavy-tailed, and
for a design goal its linear-Gaussian value then ranks candidate runs less like the exact
reweighting (Spearman 0.75-0.80 against 0.93-0.94 alone on the case of
``tests/test_suggest.py``; query and region goals, whose discrepancy ``suggest`` keeps apart,
0.98-0.996 either way). Settled on single-group fits
of each reference group's fitting grid without its top corner (largest depth or width), predicting
that corner, each group borrowing the other three: 90 % coverage 86.1 / 88.4 / 52.9 / 99.2 %
-> 98.6 / 99.5 / 70.4 / 98.2 % (MNIST-1D MLP, Fashion MLP, MNIST-1D CNN, Fashion CNN; lpd
5.86 -> 5.60 summed: the worst group gains 17.5 points, the MLPs over-cover). Reported on the
same single-group fits of the whole fitting grids, predicting the extrapolation sets: 71.9 /
80.7 / 90.9 / 60.0 % -> 87.5 / 91.6 / 93.8 / 65.3 %, lpd 5.88 -> 6.28; at the leaning band
71.9 / 81.3 / 91.5 / 60.0 % -> 99.3 / 98.4 / 97.7 / 92.0 %, lpd 5.99 -> 6.58
(``benchmarks/borrowed_drift.py``; experiments/README, "A fit borrows the reference groups'
drift").

A group the grid holds is borrowed too where the grid stops below the reference grids' sizes
on some axis (``"<group> (reference)"``, beside the grid's own measurement of that group): the
reference measured that very group's drift at sizes this grid never reached, which is the
evidence its own splits lack. Before, a grid holding all four reference groups' names borrowed
nothing, and fitted on the four fitting grids alone its bands were too narrow beyond them (90 %
coverage of the extrapolation sets 71.9 / 88.0 / 83.0 / 66.7 %, of the far sets 91.9 / 91.4 /
96.2 / 58.6 %, MNIST-1D MLP, Fashion MLP, MNIST-1D CNN, Fashion CNN). A score of the reference
grids' own rows must not borrow a measurement that saw them: a reference group with held-out
rows inside its sizes is left out (``held_out``; ``evaluate`` applies it to each group's
rows it scores, :func:`without_seen`), so every reported split (leave-group-out, leave-configs-
out, the settling split, each group alone) scores exactly as before. Not settled on a split,
since none of the reference grids' splits can see it; adopted on the argument, with no number
tuned, and reported (experiments/README, "A group's own reference measurement").
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from . import lsq
from .drift_pool import (  # noqa: F401 (the pooling's names, re-exported)
    ARCH_WEIGHT,
    POOL_WEIGHT,
    REFERENCE_GROUPS,
    REFERENCE_RATES,
    REFERENCE_SIZES,
    borrowed_groups,
    pool,
    rates_table,
    seen_by,
    without_seen,
)
from .grid import CONFIG_KEY, GROUP_KEY, RATES, SIZE_AXES, random_errors
from .law import log_dense_error, log_eq1, log_invariant, slope_eq1

__all__ = ["extrapolation_discrepancy", "rates_table", "signed_slope", "MIN_CONFIGS", "POOL_WEIGHT",
           "REFERENCE_GROUPS", "REFERENCE_RATES", "REFERENCE_SIZES", "borrowed_groups",
           "without_seen"]

MIN_CONFIGS = 6  # least squares fits the joint law's 5 and the envelope's 6
# The shift h is a least-squares slope; a configuration whose points barely feel log m* (all on
# a plateau) would get any h. Its prior: N(0, 1) against a point noise of sd 0.1 (log error),
# i.e. a ridge of 0.1^2 / 1^2 on sum(s^2); an informative configuration has sum(s^2) of 1-10.
H_RIDGE = 0.01


def extrapolation_discrepancy(grid: pd.DataFrame, pool_weight: float | None = None,
                              progress: bool = False, top_cut: bool = True,
                              rate_evidence: bool = True, borrow: bool = False,
                              skew: bool = True, arch_pool: bool | str = True,
                              lean_relative: bool = False,
                              held_out: pd.DataFrame | None = None) -> dict[str, dict]:
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
      each run's measured dense error): ``h = sum(s r) / (sum(s^2) + H_RIDGE)`` with ``r`` the
      log residuals and ``s`` the law's local slope in ``log m*`` (the ridge keeps ``h`` near 0
      for a configuration whose points barely feel ``log m*``). A shift moves the power-law
      region and the transitions, never the two plateaus.

    The fitted configurations' ``h`` and ``v`` scatter by the noise and the configuration
    scatter the posterior band already has; those beyond the cut scatter by more. Per axis,
    with ``d`` the log of their value over the cut, ``k_h^2 = sum(h^2 - mean(h_in^2)) /
    sum(d^2)`` over the axis' splits (``h_in`` of the fitted configurations; 0 if negative),
    and ``k_v`` the same of ``v``: the axes drift at their own rates (on the reference grids,
    depth's is often the largest). A configuration outside its group's grid then gets the
    offsets ``N(0, sum_a (k_v,a d_a)^2)`` on its log dense error and ``N(0, sum_a (k_h,a
    d_a)^2)`` on its log invariant, on top of its posterior band, ``d_a`` being its log
    excess on axis ``a`` over the group's nearest trained configuration
    (:func:`bayes_prune.grid.log_excess`; on a full cross product, over the axis' largest
    value). Above its median, the invariant's offset has the variance ``sum_a (s_a d_a)^2``
    more, ``s_a`` (``skew_invariant``) the positive part of the axis' top cut's signed slope
    ``sum((h - mean h_in) d) / sum(d^2)`` (module docstring, "Why the band leans"). Each
    ``k`` is the larger of that
    all-cut rate and the same measured on the axis' highest cut alone (``top``; module
    docstring)
    (:class:`bayes_prune.posterior.Posterior`). The rates are then pooled across groups
    (:func:`bayes_prune.drift_pool.pool`, weight ``pool_weight``, default
    :data:`POOL_WEIGHT`), a group's own rate weighing as much as the evidence of the cuts it
    was measured on: every cut's, or the top cut's alone where the invariant's rate is the top
    cut's. ``top_cut=False`` gives the
    all-cut rates alone, ``rate_evidence=False`` every cut's evidence whichever rate is used,
    ``skew=False`` no lean (the rule before, for comparisons), ``arch_pool=True`` a population
    of the group's architecture first (the default; ``False``: one population for all),
    ``arch_pool="lean"`` / ``"rates"`` that for the lean / the rates alone,
    ``lean_relative=True`` the population's lean scaled to the group's rate (these three
    measured, not the default: module docstring).
    ``borrow=True`` (``fit --borrow-drift``) adds to the population the reference groups of
    :data:`REFERENCE_GROUPS` that ``grid`` does not hold, and those it holds but stops below
    on some axis (:data:`REFERENCE_SIZES`; keyed ``"<group> (reference)"``), as entries
    marked ``borrowed`` (their own rates, no ``max_*``; :func:`borrowed_groups`, module
    docstring). ``held_out``: rows to be scored; a reference group with rows inside its
    sizes is not borrowed (its measurement may have seen them).
    Least squares has no priors: where the dense law is poorly pinned (few sizes below the
    cut) its misses, and so ``k_v``, overstate the posterior's.

    Returns ``{"arch/task": {"max_depth", "max_width", "max_n_train", "sd_dense",
    "sd_invariant", "skew_invariant", "configurations", "splits", "evidence", "own", "top",
    "pooled"}}``, ``sd_*`` and ``skew_invariant`` being ``{axis: k}`` (per unit of log
    excess, pooled as the others, with the same shares), ``own`` the group's own
    rates before pooling, ``top`` its highest cut's rates, ``evidence`` ``{axis: sum d^2}``
    (over the cuts the invariant's rate came from) and
    ``pooled`` ``{axis: share of its own}``; an
    axis without a split (too few values or configurations) is listed in ``unmeasured`` and
    takes the population's rate (recorded in ``inherited``). ``progress`` shows a bar over the
    groups' axes (on the reference grids the splits take 4-8 s).
    """
    from tqdm.auto import tqdm

    out = {}
    groups = grid.groupby(GROUP_KEY, sort=True)
    bar = tqdm(total=groups.ngroups * len(SIZE_AXES), desc="extrapolation discrepancy",
               unit="axis", disable=not progress, leave=False)
    for key, rows in groups:
        info = {f"max_{a}": float(rows[a].max()) for a in SIZE_AXES}
        info.update(sd_dense={}, sd_invariant={}, skew_invariant={}, configurations=0,
                    splits=0, evidence={})
        info["top"] = {name: {} for name in RATES}
        for axis in SIZE_AXES:
            sums = np.zeros(3)  # sum h^2 - mean(h_in^2), the same of v, sum d^2
            top = np.zeros(3)  # the same, of the axis' top cut alone
            lean = 0.0  # the top cut's signed slope of h over d, where positive
            values = np.unique(rows[axis].to_numpy(float))
            # at least two values, and half of them, fitted: a law fitted on a sliver of the
            # grid misses by its coefficients' uncertainty, which the posterior has already
            for cut in split_cuts(values):
                misses = split_misses(rows, axis, cut)
                if misses is None:
                    continue
                h_in, v_in, h, v, d = misses
                top = np.array([np.sum(h**2) - len(h) * np.mean(h_in**2),
                                np.sum(v**2) - len(v) * np.mean(v_in**2), np.sum(d ** 2)])
                lean = max(signed_slope(h_in, h, d), 0.0) if skew else 0.0
                sums += top
                info["configurations"] += len(h)
                info["splits"] += 1
            info["skew_invariant"][axis] = info["top"]["skew_invariant"][axis] = lean
            for k, name in enumerate(("sd_invariant", "sd_dense")):
                info["top"][name][axis] = _rate(top[k], top[2])
                # the drift nearest the grid's edge, where extrapolations start, when it is
                # larger than the average over every cut (module docstring)
                info[name][axis] = max(_rate(sums[k], sums[2]),
                                       info["top"][name][axis] if top_cut else 0.0)
            # the pooling weighs the group's own rate by the evidence of the measurement it
            # came from: the top cut's alone when the invariant's top-cut rate is the larger
            # (module docstring, "How much a group's own rate weighs")
            from_top = top_cut and rate_evidence and \
                _rate(top[0], top[2]) > _rate(sums[0], sums[2])
            info["evidence"][axis] = float(top[2] if from_top else sums[2])
            if sums[2] == 0:
                info.setdefault("unmeasured", []).append(axis)
            bar.update()
        out["/".join(key)] = info
    bar.close()
    if borrow:
        for group, key in borrowed_groups(out, held_out).items():
            out[key] = {"borrowed": True, "reference_of": group,
                        **{n: dict(r) for n, r in REFERENCE_GROUPS[group].items()},
                        "evidence": dict.fromkeys(SIZE_AXES, 1.0)}
    return pool(out, POOL_WEIGHT if pool_weight is None else pool_weight, arch_pool,
                lean_relative)


def signed_slope(h_in: np.ndarray, h: np.ndarray, d: np.ndarray) -> float:
    """The signed slope ``sum((h - mean h_in) d) / sum(d^2)`` of one split's invariant shifts
    ``h`` beyond its cut over their log excess ``d``, the fitted side's mean shift ``h_in``
    taken off: how fast the configurations beyond the cut prune better (> 0) or worse."""
    return float(np.sum((h - h_in.mean()) * d) / np.sum(d * d))


def _rate(excess: float, evidence: float) -> float:
    """``sqrt(excess / evidence)``, 0 without evidence or for a negative excess."""
    return float(np.sqrt(max(excess, 0.0) / evidence)) if evidence > 0 else 0.0


def split_cuts(values: np.ndarray) -> np.ndarray:
    """The cuts of an axis' sorted unique ``values`` that keep at least two and half of them,
    and not all, on the fitted side."""
    return values[max(2, (len(values) + 1) // 2) - 1:-1]


def split_misses(rows: pd.DataFrame, axis: str, cut: float):
    """One nested split of a group's ``rows``: least squares on the configurations with
    ``axis`` up to ``cut``, and the misses ``(h_in, v_in, h, v, d)`` of the fitted
    configurations and of those beyond (see :func:`extrapolation_discrepancy`), ``d`` the
    latter's log excess over the cut. ``None`` if too few configurations are fitted or least
    squares fails."""
    small, large = rows[rows[axis] <= cut], rows[rows[axis] > cut]
    if len(small[CONFIG_KEY].drop_duplicates()) < MIN_CONFIGS:
        return None
    try:
        joint, dense = lsq.fit_joint_and_dense(small)
    except (ValueError, FloatingPointError):
        return None
    h_in, v_in, _ = _config_misses(small, joint, dense)
    h, v, first = _config_misses(large, joint, dense)
    return h_in, v_in, h, v, np.log(large[axis].to_numpy(float)[first] / cut)


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
    h = np.bincount(cfg, slope * r) / (np.bincount(cfg, slope**2) + H_RIDGE)
    dense_pt = rows["round"].to_numpy() == 0
    n_dense = np.bincount(cfg[dense_pt], minlength=len(h))
    v = np.bincount(cfg[dense_pt], (log_obs - log_dense)[dense_pt], minlength=len(h)) \
        / np.maximum(n_dense, 1)  # 0 for a configuration without a dense point
    return h, v, np.unique(cfg, return_index=True)[1]
