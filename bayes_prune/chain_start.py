"""A chain's start, judged: whether a chain is stuck by its first tuning steps.

Now and then nutpie's jittered start leaves a chain where it cannot leave: its step size
collapses, or its log density stays far below the other chains'. Such a chain holds a fit for
an hour (a thousand gradient evaluations a draw) or runs to the draw cap with every draw
divergent; :func:`bayes_prune.sampler.sample` asks :func:`judge_start` and starts the chains
again from the next seed. It sits below the sampler and imports nothing of the package.
"""

from __future__ import annotations

import time
import warnings

import numpy as np

__all__ = ["STUCK_STEP", "STUCK_WINDOW", "STUCK_RATIO", "STUCK_LOGP", "RESTARTS",
           "stuck_chains", "judge_start", "look", "finished"]

_JUDGE_EVERY = 1.0  # seconds between looks at the chains' first tuning steps

# A chain is stuck when, over the STUCK_WINDOW tuning steps before STUCK_STEP, its step size
# (geometric mean) is under STUCK_RATIO of the chains' median, or its mean log density is
# below the chains' median by more than STUCK_LOGP times their typical spread there (the
# median over chains of each one's sd of log density in the window; in the typical set about
# sqrt(dimension / 2)). Judged at a fixed tuning step and on the chains' own statistics, so a
# seed still gives one posterior (a guard that judged draw counts, how far each chain had got
# when it looked, made two fits at one seed differ and stopped a chain that was only tuning
# longer; experiments/README, "The envelope's depth term as the default, tried"). Measured
# (experiments/README, "A chain stuck at its start, restarted"): healthy chains of the
# reference, external and small grids at 0.52 of the median step or more and within 1.2
# spreads of its log density;
# stuck chains at 0.0002-0.02 of the step or thousands of spreads below (a chain stuck at its
# start: log density -1.06e6 against 17,360 in the other three). Two modes that the data
# leave open, such as the Fashion CNN grid's two values of gamma, differ by less than one spread.
STUCK_STEP = 100
STUCK_WINDOW = 25
STUCK_RATIO = 0.05
STUCK_LOGP = 100.0
RESTARTS = 2  # starts again at most this often (seed + 1, seed + 2); then samples on


def stuck_chains(step_size: np.ndarray, logp: np.ndarray, tune: int) -> list[int]:
    """The chains stuck by their first tuning steps. ``step_size`` and ``logp``
    ``(chains, steps)`` are nutpie's warm-up step size and log density (NaN where a chain has
    not got yet), judged over the :data:`STUCK_WINDOW` steps before ``min(STUCK_STEP, tune)``,
    which every chain must have taken: a chain is stuck when its geometric-mean step size there
    is under :data:`STUCK_RATIO` of the chains' median, or its mean log density lies more than
    :data:`STUCK_LOGP` typical spreads below theirs. Fewer than two chains: none."""
    at = min(STUCK_STEP, tune)
    lo = max(at - STUCK_WINDOW, 0)
    step = np.asarray(step_size, dtype=float)[:, lo:at]
    lp = np.asarray(logp, dtype=float)[:, lo:at]
    if step.shape[0] < 2 or at < 1:
        return []
    if not (np.isfinite(step).all() and np.isfinite(lp).all()):
        raise ValueError("stuck_chains needs every chain's first tuning steps")
    level = np.exp(np.log(np.maximum(step, 1e-300)).mean(axis=1))
    height = lp.mean(axis=1)
    spread = max(float(np.median(lp.std(axis=1))), 1.0)
    stuck = (level < STUCK_RATIO * np.median(level)) | \
        (np.median(height) - height > STUCK_LOGP * spread)
    return [int(c) for c in np.flatnonzero(stuck)]


def judge_start(run, tune: int) -> list[int]:
    """:func:`stuck_chains` of ``run`` once every chain has its first tuning steps (or the run
    has ended: a short run is judged on all it drew)."""
    at = min(STUCK_STEP, tune)
    if at < 1:
        return []
    while True:
        done = finished(run)
        trace = look(run)
        stats = None if trace is None else trace.get("warmup_sample_stats")  # none at first
        if stats is not None and "step_size" in stats and "logp" in stats:
            steps, logp = stats["step_size"].to_numpy(), stats["logp"].to_numpy()
            if steps.shape[1] >= at and np.isfinite(steps[:, :at]).all() \
                    and np.isfinite(logp[:, :at]).all():
                return stuck_chains(steps, logp, tune)
        if done:
            return []
        time.sleep(_JUDGE_EVERY)


def look(run):
    """A copy of ``run``'s trace so far, or None if it was caught between two batches (look
    again later); arviz's "more chains than draws" early on is silenced."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return run.inspect()
    except Exception:
        return None


def finished(run) -> bool:
    try:
        return run.is_finished
    except TimeoutError:  # nutpie's sampler busy: still running
        return False
