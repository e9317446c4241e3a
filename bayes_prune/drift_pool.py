"""The drift's population: how each group's measured extrapolation-discrepancy rates are pooled
with the other groups' (:func:`pool`), the shipped reference groups' own rates that a fit may
borrow (:data:`REFERENCE_GROUPS`, which of them: :func:`borrowed_groups`, :func:`without_seen`),
and the table ``fit`` prints of the result
(:func:`rates_table`). Below :mod:`bayes_prune.discrepancy`, which measures the rates and
explains every choice here in its module docstring.
"""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd

from .grid import LEAN, RATES, SIZE_AXES, arch_of

__all__ = ["ARCH_WEIGHT", "POOL_WEIGHT", "REFERENCE_GROUPS", "REFERENCE_RATES",
           "REFERENCE_SIZES", "borrowed_groups", "pool", "rates_table", "same_arch",
           "seen_by", "without_seen"]

# The population's weight against a group's own evidence (the sum of d^2 over the configurations
# beyond its splits' cuts): 4 is about 16 configurations half a log unit beyond. Settled on
# splits that hold out each group's own largest configurations (experiments/README); 1, 4, 16
# and infinity scored alike there, 0 (no pooling) worse.
POOL_WEIGHT = 4.0
ARCH_WEIGHT = 1.0  # the population's weight, in groups, against an architecture's other groups
# The own rates of the shipped reference grids' four groups (fitting grids and extrapolation
# sets, the widest measurement of drift there is). A fit that borrows (fit --borrow-drift) adds
# those of the reference groups it does not hold itself to its population (bayes_prune.discrepancy's
# docstring, "A fit borrows"). A test keeps these equal to what the reference grids measure today.
REFERENCE_GROUPS = {
    "cnn/fashion-mnist": {"sd_dense": {"depth": 0.7312, "width": 0.4586, "n_train": 0.1364},
                          "sd_invariant": {"depth": 3.4665, "width": 1.7934, "n_train": 0.5169},
                          "skew_invariant": {"depth": 3.8613, "width": 2.2458, "n_train": 0.2495}},
    "cnn/mnist1d": {"sd_dense": {"depth": 0.5284, "width": 0.2704, "n_train": 0.0761},
                    "sd_invariant": {"depth": 1.5524, "width": 0.9918, "n_train": 0.2036},
                    "skew_invariant": {"depth": 1.6418, "width": 1.1367, "n_train": 0.0841}},
    "mlp/fashion-mnist": {"sd_dense": {"depth": 0.0392, "width": 0.0152, "n_train": 0.0432},
                          "sd_invariant": {"depth": 0.2333, "width": 0.4338, "n_train": 0.1111},
                          "skew_invariant": {"depth": 0.0, "width": 0.411, "n_train": 0.0099}},
    "mlp/mnist1d": {"sd_dense": {"depth": 0.2059, "width": 0.188, "n_train": 0.1341},
                    "sd_invariant": {"depth": 0.8191, "width": 0.5197, "n_train": 0.7868},
                    "skew_invariant": {"depth": 0.5916, "width": 1.2903, "n_train": 0.7814}}}
# each reference group's largest depth, width and n_train: a grid that holds one of these groups
# but stops below it on some axis borrows its reference measurement too (bayes_prune.discrepancy)
REFERENCE_SIZES = {group: {"depth": 4.0, "width": 48.0 if group.startswith("cnn/") else 256.0,
                           "n_train": 4000.0} for group in REFERENCE_GROUPS}
# their population: the root mean square per axis, what a fit that borrows all four and can
# split nothing itself inherits
REFERENCE_RATES = {name: {axis: float(np.sqrt(np.mean([g[name][axis] ** 2
                                                       for g in REFERENCE_GROUPS.values()])))
                          for axis in SIZE_AXES} for name in RATES}


def same_arch(groups, group: str) -> list[str]:
    """The groups of ``groups`` other than ``group`` that share its architecture."""
    return [g for g in groups if g != group and arch_of(g) == arch_of(group)]


def _mean_square(out: dict[str, dict], groups: list[str], axis: str) -> dict[str, float]:
    """Per rate, the mean of ``groups``' own squared rates on ``axis``."""
    return {name: float(np.mean([out[g]["own"][name][axis] ** 2 for g in groups]))
            for name in RATES}


def pool(out: dict[str, dict], weight: float, arch_pool: bool | str = True,
         lean_relative: bool = False) -> dict[str, dict]:
    """Each group's rates, pooled with the population's.

    Per axis, the population's squared rate is the mean of the squared rates of the groups
    that measured it: the drift of a typical group together with the groups' spread around
    it. A group's own measurement weighs as much as its evidence ``D`` (the sum of ``d^2`` over
    its splits' configurations beyond their cut) against the population's ``weight``:
    ``k^2 = (weight k_pop^2 + D k_own^2) / (weight + D)``. A group that cannot split an axis
    (``D = 0``) takes the population's rate (borrowed reference groups included); without them,
    if no group could, the largest rate of its own other axes, and if it measured none,
    :data:`REFERENCE_RATES`. The lean (``skew_invariant``) is pooled the same way and then
    raised to the population's where it falls below it (:mod:`bayes_prune.discrepancy`).
    With ``arch_pool`` (the default) a group's population is first its architecture's: the mean
    squared rate of the *other* groups of its architecture that measured the axis, ``n`` of
    them, weighing ``n / (n + ARCH_WEIGHT)`` against everyone's (why:
    :mod:`bayes_prune.discrepancy`); a group alone in its architecture has everyone's;
    ``arch_pool=False`` one population for all, the rule before. ``own``
    keeps the group's own rates, ``pooled`` the share ``D / (weight + D)`` its own
    measurement got, ``arch_share`` the share ``n / (n + ARCH_WEIGHT)`` of its population
    that is its architecture's, ``inherited`` where an unmeasured axis' rate came from.
    ``arch_pool="lean"`` gives the lean alone that population (its floor included), the rates
    everyone's; ``arch_pool="rates"`` the rates alone, the lean everyone's (both measured, not
    adopted). ``lean_relative`` makes the population's lean for a
    group the population's ratio of lean to invariant rate (``mean s^2 / mean k^2``) times the
    group's own pooled invariant rate, floor included (measured: :mod:`bayes_prune.discrepancy`).
    """
    for info in out.values():
        info["own"] = {name: dict(info[name]) for name in RATES}
        info["pooled"] = {}
    for axis in SIZE_AXES:
        names = [g for g, i in out.items() if i["evidence"][axis] > 0]
        measured = [out[g] for g in names]

        pop_all = _mean_square(out, names, axis) if names else None
        for group, info in out.items():
            ev = info["evidence"][axis]
            pop2 = pop_all
            if arch_pool and pop_all is not None:
                # the other groups of the same architecture, shrunk to everyone's by one
                # pseudo-group of the population (for the lean alone with "lean")
                same = same_arch(names, group)
                share_arch = len(same) / (len(same) + ARCH_WEIGHT)
                if arch_pool != "lean":
                    info.setdefault("arch_share", {})[axis] = share_arch
                if same:
                    pop2 = {name: share_arch * v + (1 - share_arch) * pop_all[name]
                            if arch_pool is True or (name == LEAN) == (arch_pool == "lean")
                            else pop_all[name]
                            for name, v in _mean_square(out, same, axis).items()}
            if pop2 is None:
                own = [a for a in SIZE_AXES if info["evidence"][a] > 0]
                info.setdefault("inherited", {})[axis] = "other axes" if own \
                    else "reference grids"
                for name in RATES:
                    info[name][axis] = (max(info["own"][name][a] for a in own) if own
                                        else REFERENCE_RATES[name][axis])
                continue
            if ev == 0:
                borrowed = sum(bool(i.get("borrowed")) for i in measured)
                info.setdefault("inherited", {})[axis] = (
                    "reference grids" if borrowed == len(measured) else
                    f"population of {len(measured)} group(s)"
                    + (f", {borrowed} of them reference grids" if borrowed else ""))
            share = ev / (weight + ev) if ev > 0 else 0.0
            info["pooled"][axis] = share
            for name in RATES:
                if name == LEAN and lean_relative and pop2["sd_invariant"] > 0:
                    # the population's lean-to-rate ratio, at this group's own pooled rate
                    pop2 = dict(pop2, **{LEAN: pop2[LEAN] / pop2["sd_invariant"]
                                         * info["sd_invariant"][axis] ** 2})
                k2 = share * info["own"][name][axis] ** 2 + (1 - share) * pop2[name]
                if name == LEAN:  # never below the population's (:mod:`bayes_prune.discrepancy`)
                    k2 = max(k2, pop2[name])
                info[name][axis] = float(np.sqrt(k2))
    return out


def borrowed_groups(out: dict[str, dict], held_out: pd.DataFrame | None = None
                    ) -> dict[str, str]:
    """The reference groups a fit borrows, ``{group: key in the discrepancy}``: each reference
    group the grid does not hold (key: its name), and each it holds but stops below on some
    axis (key: ``"<group> (reference)"``, beside the grid's own measurement), since the
    reference measured its drift at sizes this grid never reached. Left out: a group with
    ``held_out`` configurations inside the reference's sizes, which its measurement may have
    seen (an evaluation on the reference grids' own rows; :mod:`bayes_prune.discrepancy`)."""
    picked = {}
    for group, sizes in REFERENCE_SIZES.items():
        if held_out is not None and len(held_out):
            arch, task = group.split("/", 1)
            mine = held_out[(held_out["arch"] == arch) & (held_out["task"] == task)]
            if np.logical_and.reduce([mine[a].to_numpy() <= sizes[a] for a in SIZE_AXES]).any():
                continue
        if group not in out:
            picked[group] = group
        elif any(out[group].get(f"max_{a}", np.inf) < sizes[a] for a in SIZE_AXES):
            picked[group] = f"{group} (reference)"
    return picked


def seen_by(disc: dict[str, dict], held_out: pd.DataFrame) -> list[str]:
    """The borrowed entries of a stored discrepancy that :func:`borrowed_groups` leaves out
    for the rows ``held_out``."""
    fitted = {g: i for g, i in disc.items() if not i.get("borrowed")}
    keep = set(borrowed_groups(fitted, held_out).values())
    return [g for g, i in disc.items() if i.get("borrowed") and g not in keep]


def without_seen(disc: dict[str, dict], held_out: pd.DataFrame) -> dict[str, dict]:
    """A stored discrepancy (``borrow=True``) scored on ``held_out``: the borrowed reference
    groups that :func:`borrowed_groups` leaves out for these rows removed, the rest pooled
    again from their own rates (through architectures if it was pooled so), as
    :func:`extrapolation_discrepancy` with ``held_out`` gives it. Unchanged when nothing is
    removed."""
    drop = seen_by(disc, held_out)
    if not drop or any("own" not in i for i in disc.values()):
        return disc
    out = {}
    for g, info in disc.items():
        if g in drop:
            continue
        info = copy.deepcopy(info)
        for name in RATES:
            if name in info["own"]:
                info[name] = dict(info["own"][name])
        for key in ("own", "pooled", "inherited", "arch_share"):
            info.pop(key, None)
        out[g] = info
    # pooled as it was: through architectures where it stored their shares (arch_share)
    return pool(out, POOL_WEIGHT, arch_pool=any("arch_share" in i for i in disc.values()))


def rates_table(disc: dict[str, dict]) -> pd.DataFrame:
    """One row per fitted group and axis of a stored discrepancy (``fit`` prints it): the
    group's largest trained value on the axis, its three rates per unit of log excess (``dense``
    and ``invariant``: the offsets' sd; ``lean``: the invariant's extra towards pruning better)
    and where they came from (``source``: the share that is the group's own measurement, or
    whence an axis it could not measure inherited them). Borrowed reference groups are left
    out; they are named apart."""
    rows = []
    for group, info in disc.items():
        if info.get("borrowed"):
            continue
        got, share = info.get("inherited", {}), info.get("pooled", {})
        for a in info["sd_dense"]:
            rows.append({"group": group, "axis": a, "largest": info.get(f"max_{a}", np.nan),
                         "dense": info["sd_dense"][a], "invariant": info["sd_invariant"][a],
                         "lean": info.get(LEAN, {}).get(a, 0.0),
                         "source": f"inherited: {got[a]}" if a in got else
                         f"{100 * share[a]:.0f} % its own" if a in share else "its own"})
    return pd.DataFrame(rows, columns=["group", "axis", "largest", "dense", "invariant", "lean",
                                       "source"])
