"""What to train next: candidate IMP runs ranked by how much they would narrow the posterior's
answer to a question, per second of training (``bayes-prune suggest``, ``Posterior.suggest``).

**The goal** is a quantity with one value per posterior draw (:class:`Goal`, in
:mod:`bayes_prune.goals`): the log expected
error of some configurations (``query``, ``region``), the log of the fewest non-zero weights
that reach an error (``design``), or the difference of a coefficient between two groups
(``compare``). Its spread over the draws is what we do not know about the answer.

**A candidate run** is simulated under every draw: its trajectory is the law's expected log
error at the densities ``(1 - prune_fraction)^r`` of its rounds, up to the round where the
posterior's median reaches the stop rule of IMP (within ``stop_within`` of random guessing),
from the same draw of the configuration's dense error that a query of that configuration sees;
a measured run adds a seed offset shared along the trajectory (sd ``sigma_seed``) and each
point's own noise (``sigma`` and the test set's binomial noise), the group's posterior medians.

**Linear-Gaussian (ensemble) value of a run.** Over the draws, the goal ``g`` and a run's
trajectory ``y`` are treated as jointly Gaussian with the draws' covariances, so measuring ``y``
shrinks the goal's total variance by ``tr(C_gy (C_yy + R)^-1 C_yg)``, ``R`` the run's noise
covariance. The batch is chosen greedily: after each pick the ensemble covariances are
conditioned on that run (a rank-``m`` update, ``m`` its points), so a second run of the same
configuration is worth only what its own noise adds, and ten near-copies are never picked.
Each pick maximises variance reduction per second of training.

**Choice within a budget.** Picking by reduction per second alone can spend a budget on many
cheap runs when one costly run near the goal would narrow it more, so with a budget a second
plan is made, each pick the largest reduction that still fits, and the plan whose runs narrow
the goal more, by the same linear-Gaussian value, is kept (the summary's ``rule``). Greedy
choice by value per cost alone can be arbitrarily far from the best plan within a budget;
the better of the two plans is within a constant factor of it for a submodular value
(Khuller, Moss & Naor 1999; Leskovec et al. 2007, "cost-effective outbreak detection").
:func:`importance_gain` computes
the same one-run value without the Gaussian step (the draws reweighted by each simulated
measurement's likelihood), to check that both rank candidates alike.

**The extrapolation discrepancy** of a goal beyond its group's grid (``query``, ``region``) is
no property of the draws that a run could pin down: it shrinks only as the grid grows toward
the goal. Its share of the goal's variance is kept apart and scaled with the goal's log excess
over the nearest trained configuration (:class:`_Discrepancy`), so a run that extends the grid
toward the goal is worth that shrinkage on top of what it teaches the law.

**Cost.** Seconds per round are fitted on the rounds a store measured
(:class:`bayes_prune.cost.CostModel`),
``seconds = c0 + c1 x weights x steps x batch_size``; a run costs that times its trainings
(round 0 and each pruning round). Without a store the cost is in weight-steps (``c0 = 0``,
``c1 = 1``), which ranks alike up to the fixed cost per round.

Numpy only, like every query: no torch, PyMC or JAX is imported.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .candidates import RUN_COLUMNS, candidate_runs, drop_finished, write_specs
from .cost import CostModel
from .errors import UserError
from .goals import Goal, design_rows, goal_compare, goal_design, goal_query
from .grid import CONFIG_KEY, SIZE_AXES
from .law import binomial_log_var

__all__ = ["Goal", "CostModel", "candidate_runs", "goal_query", "goal_design", "goal_compare",
           "simulate", "greedy", "plan", "importance_gain", "suggest", "write_specs",
           "drop_finished", "design_reach", "RUN_COLUMNS"]


# ------------------------------------------------------------------------------ simulation
def simulate(post, cands: pd.DataFrame, goal: Goal, seed: int = 0) -> dict:
    """Every candidate's simulated trajectory and the goal, per posterior draw.

    Returns ``Y`` ``(draws, points)`` (log expected error of every candidate configuration's
    rounds, one block per configuration), ``blocks`` (per candidate run: its columns of ``Y``),
    ``noise`` (per candidate: its noise covariance), ``G`` ``(draws, k)`` (the goal),
    ``trainings`` (per candidate: the trainings it takes), ``params`` (weights), ``disc`` (the
    goal's extrapolation discrepancy, :class:`_Discrepancy`, or ``None``) and ``configs``."""
    cands = cands.reset_index(drop=True)
    params = post._params(cands)
    cfg_codes = pd.MultiIndex.from_frame(
        cands[CONFIG_KEY + ["prune_fraction", "rounds"]]).factorize()[0]
    first = pd.Series(range(len(cands))).groupby(cfg_codes).first().to_numpy()
    parts, owner = [], []
    for j, i in enumerate(first):
        c = cands.iloc[i]
        r = np.arange(int(c["rounds"]) + 1)
        part = pd.DataFrame({k: c[k] for k in CONFIG_KEY}
                            | {"density": (1 - c["prune_fraction"]) ** r, "round": r})
        part["params_total"] = params[i]
        if "params_prunable" in cands and pd.notna(c.get("params_prunable")):
            part["params_prunable"] = c["params_prunable"]
        parts.append(part)
        owner.append(np.full(len(r), j))
    traj = pd.concat(parts, ignore_index=True)
    owner = np.concatenate(owner)
    extra = None
    if goal.kind in ("query", "region"):
        extra = goal.rows
    elif goal.kind == "design":
        extra = design_rows(post, cands, goal)
    rows = traj if extra is None else pd.concat([traj, extra], ignore_index=True)
    # for a goal of configurations, the law's part, which runs inform through the draws, apart
    # from the extrapolation discrepancy, which shrinks only as the grid grows toward the goal
    split = goal.kind in ("query", "region") and bool(post.meta.get("discrepancy"))
    draws = post.predict_draws(rows, band="expected", seed=seed, discrepancy=not split)
    disc = None
    if split:
        full = np.log(post.predict_draws(extra, band="expected", seed=seed).astype(np.float64))
        disc = _Discrepancy(post, extra, full.var(axis=1, ddof=1)
                            - np.log(draws[len(traj):].astype(np.float64)).var(axis=1, ddof=1))
    logd = np.log(draws[:len(traj)].T.astype(np.float64))  # (draws, points)
    if goal.kind in ("query", "region"):
        G = np.log(draws[len(traj):].T.astype(np.float64))
    elif goal.kind == "design":
        G = _design_draws(post, extra, draws[len(traj):], goal.target_error)
        reach = design_reach(extra, draws[len(traj):], goal.target_error)
    else:
        da, db = post.natural(*goal.a), post.natural(*goal.b)
        if goal.coef not in da:
            raise UserError(f"unknown coefficient {goal.coef!r}; choose one of {', '.join(da)}")
        G = (da[goal.coef] - db[goal.coef]).astype(np.float64)[:, None]
    if not np.isfinite(G).all():
        raise UserError(f"goal '{goal.label}': non-finite under some draws; choose another goal")
    # per configuration: keep the rounds up to where IMP would stop, the first round at which
    # a measured run (the median plus one sd of a point's noise) reaches the stop rule, or the
    # median curve has flattened out below it
    med = np.median(logd, axis=0)
    keep_cols, blocks_cfg, noise_cfg = [], [], []
    for j, i in enumerate(first):
        c = cands.iloc[i]
        at = np.flatnonzero(owner == j)
        seed_var, point_var = _run_noise(post, c["arch"], c["task"], med[at])
        rule = np.log((1 - c["stop_within"]) * post._eps0_ntest(c["arch"], c["task"])[0])
        stop = np.flatnonzero((med[at] + np.sqrt(seed_var + point_var) >= rule)
                              | (med[at] >= med[at][-1] - 0.01))
        n = (stop[0] if len(stop) else len(at) - 1) + 1
        blocks_cfg.append(np.arange(len(keep_cols), len(keep_cols) + n))
        keep_cols.extend(at[:n])
        noise_cfg.append(seed_var + np.diag(point_var[:n]))
    return {"Y": logd[:, keep_cols], "blocks": [blocks_cfg[k] for k in cfg_codes],
            "noise": [noise_cfg[k] for k in cfg_codes], "G": G,
            "trainings": np.array([len(blocks_cfg[k]) for k in cfg_codes]), "params": params,
            "disc": disc, "configs": cands[CONFIG_KEY].reset_index(drop=True),
            **({"reach": reach} if goal.kind == "design" else {})}


def _run_noise(post, arch: str, task: str, log_med: np.ndarray) -> tuple[float, np.ndarray]:
    """The noise of one measured run of (arch, task) along a curve of median log error
    ``log_med``: the variance of its seed offset, shared by its points, and each point's own
    variance (scatter and the test set's binomial noise), from the group's posterior medians."""
    sigma, sigma_seed, _ = post._noise(arch, task)
    eps = np.clip(np.exp(log_med), 1e-6, 1 - 1e-6)
    point = float(np.median(sigma)) ** 2 + binomial_log_var(eps, post._eps0_ntest(arch, task)[1])
    return float(np.median(sigma_seed)) ** 2, point


class _Discrepancy:
    """The goal's share of the extrapolation discrepancy and how a larger grid shrinks it.

    A goal row beyond its group's grid carries offsets of sd ``sqrt(sum_a (k_a d_a)^2)``
    (:mod:`bayes_prune.discrepancy`), ``d_a`` its log excess over the group's nearest trained
    configuration (:func:`bayes_prune.grid.log_excess`); its variance in log error, measured
    from the draws with and without the offsets, is taken to scale with ``sum_a (k_a d_a)^2``,
    ``k_a`` the root sum of squares of the dense and invariant rates and half the lean's
    (the mean square of the offsets, :meth:`bayes_prune.beyond.Beyond.drift_weights`). A run
    adds its configuration to its group's grid, and so lowers the excess of the goal rows it
    is nearer to than every trained configuration: a shallow wide run does not bring a deep
    wide goal inside the grid."""

    def __init__(self, post, rows: pd.DataFrame, var: np.ndarray):
        self.info = post.meta["discrepancy"]
        self.groups = np.array([f"{a}/{t}" for a, t in zip(rows["arch"], rows["task"],
                                                             strict=True)])
        self.sizes = rows[list(SIZE_AXES)].to_numpy(float)
        self.var0 = np.maximum(var, 0.0)
        self.post = post
        self.base = self._weight(self.trained())

    def trained(self) -> dict:
        """Each fitted group's trained configurations (rows of depth, width, n_train)."""
        return {g: t for g, t in self.post.beyond.trained.items()
                if g in self.info and not self.info[g].get("borrowed")}

    def _weight(self, trained: dict) -> np.ndarray:
        out = np.zeros(len(self.groups))
        for g in np.unique(self.groups):
            if g not in trained:  # (trained() holds only the fitted groups with a discrepancy)
                continue
            at = np.flatnonzero(self.groups == g)
            excess = self.post.beyond.excess(g, self.sizes[at], trained[g])
            out[at] = (excess ** 2 * self.post.beyond.drift_weights(g, lean=True)).sum(axis=1)
        return out

    def total(self, trained: dict) -> float:
        """The goal's total discrepancy variance with the grids grown to ``trained``."""
        w = self._weight(trained)
        ratio = np.divide(w, self.base, out=np.zeros_like(w), where=self.base > 0)
        return float((self.var0 * ratio).sum())


def _design_draws(post, rows: pd.DataFrame, draws: np.ndarray, target: float) -> np.ndarray:
    """Per draw, log of the fewest non-zero weights among ``rows`` with expected error at most
    ``target``; draws where none reaches it get the log of twice the most weights searched
    (the answer lies beyond the candidates: as uncertain as it can be here)."""
    total = rows["params_total"].to_numpy(float)
    prunable = rows["params_prunable"].to_numpy(float)
    nonzero = total - prunable + rows["density"].to_numpy(float) * prunable
    big = np.log(2 * nonzero.max())
    order = np.argsort(nonzero)
    meets = draws[order] <= target  # (rows, draws), fewest weights first
    hit = meets.any(axis=0)
    first = np.argmax(meets, axis=0)
    return np.where(hit, np.log(nonzero[order][first]), big)[:, None].astype(np.float64)


def design_reach(rows: pd.DataFrame, draws: np.ndarray, target: float) -> dict:
    """How a design goal's search stands: ``reached``, the fraction of posterior draws in
    which some row of ``rows`` has expected error at most ``target`` (0: nothing searched
    reaches it in any draw, so no run among these candidates can narrow the goal), and the
    row of lowest median expected error (``lowest_error``, its ``arch``, ``task``, ``depth``,
    ``width``, ``n_train``, ``density``)."""
    med = np.median(draws, axis=1)
    best = rows.iloc[int(np.argmin(med))]
    return {"reached": float((draws <= target).any(axis=0).mean()),
            "lowest_error": float(med.min()),
            **{k: best[k].item() if hasattr(best[k], "item") else best[k]
               for k in CONFIG_KEY + ["density"]}}


# ---------------------------------------------------------------------------------- choice
def greedy(sim: dict, cost: np.ndarray, n: int, budget: float | None = None,
           taken: np.ndarray | None = None, per_cost: bool = True) -> list[dict]:
    """Pick up to ``n`` candidates (within ``budget``), each the one whose expected reduction
    of the goal's total variance, given the runs picked before it, per unit cost is largest
    (``per_cost=False``: the largest reduction that still fits the budget, whatever it costs).
    ``taken``: candidates never to pick. Returns one dict per pick: ``index``, ``gain``
    (variance reduction), ``var_after`` (the goal's total variance after it), ``cost``."""
    Y, G = sim["Y"], sim["G"]
    S = Y.shape[0]
    X = (Y - Y.mean(axis=0)) / np.sqrt(S - 1)
    Gc = (G - G.mean(axis=0)) / np.sqrt(S - 1)
    blocks, noise = sim["blocks"], sim["noise"]
    XtX = [X[:, b].T @ X[:, b] for b in blocks]
    GtX = [Gc.T @ X[:, b] for b in blocks]
    MX = np.zeros((0, X.shape[1]))  # M^T X, M's columns the conditioning directions so far
    MG = np.zeros((0, Gc.shape[1]))
    var = float((Gc ** 2).sum())
    disc, grids = sim.get("disc"), None
    if disc is not None:
        grids = disc.trained()
        var_disc = disc.total(grids)
        var += var_disc
        sizes = sim["configs"]
        group = [f"{a}/{t}" for a, t in zip(sizes["arch"], sizes["task"], strict=True)]
        sizes = sizes[list(SIZE_AXES)].to_numpy(float)

        def grown(c):
            if group[c] not in grids:
                return grids
            return {**grids, group[c]: np.vstack([grids[group[c]], sizes[c]])}
    free = np.ones(len(blocks), bool)
    if taken is not None:
        free[taken] = False
    spent, picks = 0.0, []
    while len(picks) < n and free.any():
        best, best_val, best_gain = -1, 0.0, 0.0
        for c in np.flatnonzero(free):
            if budget is not None and spent + cost[c] > budget:
                continue
            b = blocks[c]
            Q = XtX[c] - MX[:, b].T @ MX[:, b] + noise[c]
            B = GtX[c] - MG.T @ MX[:, b]
            gain = float(np.trace(B @ np.linalg.solve(Q, B.T)))
            if grids is not None:
                gain += var_disc - disc.total(grown(c))
            value = gain / cost[c] if per_cost else gain
            if value > best_val:
                best, best_val, best_gain = c, value, gain
        if best < 0 or best_gain <= 1e-12 * max(var, 1e-300):
            break
        b = blocks[best]
        Q = XtX[best] - MX[:, b].T @ MX[:, b] + noise[best]
        L = np.linalg.cholesky(Q)
        # the new directions m = W X_c L^-T, W = I - M M^T; their products with X and G
        new_MX = np.linalg.solve(L, X[:, b].T @ X - MX[:, b].T @ MX)
        new_MG = np.linalg.solve(L, X[:, b].T @ Gc - MX[:, b].T @ MG)
        MX, MG = np.vstack([MX, new_MX]), np.vstack([MG, new_MG])
        var -= best_gain
        if grids is not None:
            grids = grown(best)
            var_disc = disc.total(grids)
        spent += cost[best]
        free[best] = False
        picks.append({"index": int(best), "gain": best_gain, "var_after": max(var, 0.0),
                      "cost": float(cost[best])})
    return picks


def plan(sim: dict, cost: np.ndarray, n: int, budget: float | None = None
         ) -> tuple[list[dict], str]:
    """The batch :func:`suggest` picks, and by which rule: by reduction per unit cost
    (``"per second"``); with a budget also by the largest reduction that fits, keeping the plan
    that leaves the goal the smaller variance (``"largest reduction"`` when that one is kept;
    module docstring, "Choice within a budget")."""
    picks = greedy(sim, cost, n, budget)
    if budget is not None:
        whole = greedy(sim, cost, n, budget, per_cost=False)
        if whole and (not picks or whole[-1]["var_after"] < picks[-1]["var_after"]):
            return whole, "largest reduction"
    return picks, "per second"


def importance_gain(sim: dict, c: int, outer: int = 200, seed: int = 0) -> float:
    """The expected reduction of the goal's total variance from candidate ``c`` alone, without
    the Gaussian step: for ``outer`` draws taken as the truth, a measurement is simulated
    (trajectory + noise) and the draws are reweighted by its likelihood; the gain is the
    prior variance minus the mean reweighted variance."""
    rng = np.random.default_rng(seed)
    Y, G = sim["Y"][:, sim["blocks"][c]], sim["G"]
    R = sim["noise"][c]
    # whitened by the noise's Cholesky factor, a measurement's log likelihood is a squared
    # distance
    Z = np.linalg.solve(np.linalg.cholesky(R), Y.T).T
    prior = float(G.var(axis=0, ddof=1).sum())
    post = []
    for o in rng.choice(len(Y), size=min(outer, len(Y)), replace=False):
        logw = -0.5 * ((Z - (Z[o] + rng.standard_normal(len(R)))) ** 2).sum(axis=1)
        w = np.exp(logw - logw.max())
        w /= w.sum()
        mean = w @ G
        post.append(float((w @ (G - mean) ** 2).sum()))
    return prior - float(np.mean(post))


# ---------------------------------------------------------------------------------- answer
def check_request(n: int, budget: float | None) -> None:
    """Refuse a batch size below 1 or a budget that is not positive."""
    if n < 1:
        raise UserError(f"--n must be at least 1, got {n}")
    if budget is not None and not budget > 0:
        raise UserError(f"--budget must be positive, got {budget}")


def suggest(post, cands: pd.DataFrame, goal: Goal, n: int = 10, budget: float | None = None,
            cost_model: CostModel | None = None, seed: int = 0) -> tuple[pd.DataFrame, dict]:
    """Rank and pick up to ``n`` of the candidate runs ``cands`` (:func:`candidate_runs`)
    for ``goal``, within ``budget`` (in the cost model's unit; a ``cost`` column of ``cands``,
    when present, is each run's cost instead). Returns the picks (one row per
    run, in pick order) and a summary (the goal's sd before and after, the cost model; for a
    design goal ``design_reach``, :func:`design_reach`: with ``reached`` 0 no run among these
    candidates can narrow it)."""
    check_request(n, budget)
    for arch, task in cands[["arch", "task"]].drop_duplicates().itertuples(index=False):
        post._check_group(arch, task)
    cost_model = cost_model or CostModel()
    sim = simulate(post, cands, goal, seed=seed)
    cost = cands["cost"].to_numpy(float) if "cost" in cands else \
        cost_model.seconds(cands, sim["params"], sim["trainings"])
    if not (np.isfinite(cost) & (cost > 0)).all():
        raise UserError("candidate costs must be positive numbers (column 'cost')")
    k = sim["G"].shape[1]
    var0 = float(sim["G"].var(axis=0, ddof=1).sum())
    if sim["disc"] is not None:
        var0 += sim["disc"].total(sim["disc"].trained())
    picks, rule = plan(sim, cost, n, budget)
    out = cands.iloc[[p["index"] for p in picks]][RUN_COLUMNS].copy().reset_index(drop=True)
    out.insert(0, "pick", np.arange(1, len(picks) + 1))
    out["params_total"] = sim["params"][[p["index"] for p in picks]]
    out["trainings"] = sim["trainings"][[p["index"] for p in picks]]
    out["cost"] = [p["cost"] for p in picks]
    out["cumulative_cost"] = np.cumsum(out["cost"]) if len(out) else []
    out["variance_reduction"] = [p["gain"] for p in picks]
    out["goal_sd_after"] = [np.sqrt(p["var_after"] / k) for p in picks]
    out["trained_config"] = [bool(post._config_index.get(tuple(r)) is not None) for r in
                             out[CONFIG_KEY].itertuples(
                                 index=False)]
    summary = {"goal": goal.label, "kind": goal.kind, "goal_sd_before": _sd(var0, k),
               "goal_sd_after": _sd(picks[-1]["var_after"], k) if picks else _sd(var0, k),
               "candidates": int(len(cands)), "picked": int(len(picks)), "rule": rule,
               "cheapest": float(cost.min()),
               "cost_unit": "given" if "cost" in cands else cost_model.unit,
               "cost_total": float(sum(p["cost"] for p in picks)),
               "cost_model": cost_model.to_dict(),
               **({"design_reach": sim["reach"]} if "reach" in sim else {})}
    return out, summary


def _sd(var: float, k: int) -> float:
    """The goal's sd from its summed variance over ``k`` parts; 0 for what is only rounding
    (a goal the same in every draw)."""
    return float(np.sqrt(var / k)) if var / k > 1e-24 else 0.0
