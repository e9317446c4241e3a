"""NUTS with nutpie: the model compiled for a backend, sampled until its diagnostics are met.

Backends (measured on the four reference grids, ``benchmarks/fit_speed.py``; README "Fit
speed"): ``jax`` compiles in seconds where ``numba`` takes 35-45 s, and its log density +
gradient costs about half as much per evaluation; ``float32`` (opt-in) about half as much
again, but its chains did not mix on the reference grids. ``numba`` stays for machines
without JAX.

:func:`sample` runs the chains in the background and stops them once every sampled variable
has bulk and tail ESS and R-hat within :data:`~bayes_prune.diagnostics.THRESHOLDS`-like targets
(checked every few seconds after ``min_draws``), or at ``max_draws``: a fit draws what its
diagnostics need, not a fixed count. Before that it judges each chain's start: a chain whose
step size has collapsed, or whose log density sits far below the others', by tuning step
:data:`STUCK_STEP` (one stuck at its jittered start, or one taking a thousand gradient
evaluations a draw in a corner of the posterior) would hold the whole fit for an hour, so the
chains start again from the next seed (:mod:`bayes_prune.chain_start`).
"""

from __future__ import annotations

import os
import sys
import time
import warnings
from dataclasses import dataclass

import numpy as np

from .chain_start import (
    RESTARTS,
    STUCK_RATIO,
    STUCK_STEP,
    finished,
    judge_start,
    look,
    stuck_chains,
)
from .errors import UserError

__all__ = ["BACKENDS", "DEVICES", "PRECISIONS", "TUNE", "TARGET_ACCEPT", "ESCALATED_ACCEPT",
           "ESCALATION", "MAX_DRAWS", "SMALL_GRID", "Target", "backend_of", "compile_model",
           "defaults_for", "precision_of", "sample", "stuck_chains", "STUCK_STEP", "STUCK_RATIO",
           "RESTARTS"]

BACKENDS = ("auto", "jax", "numba")
PRECISIONS = ("auto", "float32", "float64")
DEVICES = ("cpu", "cuda")
# tuning steps per chain and NUTS's target acceptance, fit's and the CLI's defaults for a grid
# of SMALL_GRID points or more. With 300 tuning steps the reference fit failed its
# diagnostics. At 0.85 and 500 steps the reference fit takes half the log density evaluations
# of 0.95 and 1,000 (94-103k against 219k, tree depth 4 instead of 5) and the leave-group-out
# fits pass with the same scores, but a 362-point corner of the MNIST-1D MLP grid diverged (5
# and 1 divergences on two seeds, none at 0.95 with 500 or 1,000 steps). So a fit at the
# default that diverges samples again at ESCALATED_ACCEPT (bayes_prune.fit; README, "Fit speed").
# Since the chains stop at an ESS target rather than at a fixed count, 300 tuning steps pass
# where 500 did: the reference fit at seeds 0 / 1 (600 / 800 draws, R-hat 1.009 / 1.008, 66 /
# 77 s against 72-79 / 89 s at 500), the 362-point corner (escalated at both), the gale2019
# sweep and a leave-group-out fit; tuning was 56 % of the reference fit's evaluations at 500.
TUNE = 300
TARGET_ACCEPT = 0.85
ESCALATED_ACCEPT = 0.95
# the ladder a fit at the default acceptance climbs while its chains diverge: (target
# acceptance, at least this many tuning steps). Its last step is what the small grids use: two
# 913- and 892-point grids of a task no reference grid holds (scikit-learn's digits, MLP and CNN)
# diverged at 0.85 and the MLP's once more at 0.95 (experiments/README, "A task no reference
# grid holds")
ESCALATION = ((ESCALATED_ACCEPT, 0), (0.99, 2000))
# grids of fewer points identify little (one network, two densities, a trajectory): their
# posteriors keep long ridges, and nutpie at target_accept 0.95 diverged a few times on three
# real ones (frantar2023 T5 and ViT, csgiung); at 0.99 with 2,000 tuning steps and up to
# 2,000 draws they met every threshold (experiments/README, "Other people's grids")
SMALL_GRID = 200
_CHECK_EVERY = 5.0  # seconds between looks at the trace; a check of one block takes ~0.2 s


@dataclass(frozen=True)
class Target:
    """When the chains may stop: every variable's bulk and tail ESS at least ``ess`` and its
    R-hat at most ``rhat``, after at least ``min_draws`` draws per chain, checked at every
    ``block`` draws."""

    ess: float = 400.0  # the diagnostics' own minimum (diagnostics.THRESHOLDS)
    rhat: float = 1.01
    min_draws: int = 200
    block: int = 50
    variables: tuple[str, ...] = ()  # those checked; () for all


# the most draws per chain; the chains stop at the first block meeting the ESS target
# (Target), so this is paid only by a fit that has not met it. At 1,000 two fits at 300 tuning
# steps stopped short of it (a leave-group-out fit at bulk ESS 343, a leave-configs-out fit at
# R-hat 1.011) where the reference fit stops at 700
MAX_DRAWS = 2000


def defaults_for(points: int) -> dict:
    """``fit``'s sampler defaults for a grid of ``points`` rows: ``tune``, most ``draws`` per
    chain and ``target_accept``; a grid under :data:`SMALL_GRID` points tunes longer and takes
    smaller steps (it costs seconds there)."""
    if points < SMALL_GRID:
        return {"tune": 2000, "draws": MAX_DRAWS, "target_accept": 0.99}
    return {"tune": TUNE, "draws": MAX_DRAWS, "target_accept": TARGET_ACCEPT}


def backend_of(name: str, device: str = "cpu") -> str:
    """The backend ``name`` resolves to: ``auto`` is ``jax`` when JAX imports, else ``numba``.
    ``device="cuda"`` needs JAX with a CUDA device."""
    if name not in BACKENDS:
        raise UserError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
    if device not in DEVICES:
        raise UserError(f"unknown device {device!r}; choose one of {', '.join(DEVICES)}")
    has_jax = _has_jax()
    if name == "auto":
        name = "jax" if has_jax or device == "cuda" else "numba"
    if name == "jax" and not has_jax:
        raise UserError("--backend jax: JAX is not installed (pip install 'jax>=0.4.30')")
    if device == "cuda":
        if name != "jax":
            raise UserError("--device cuda samples with JAX; --backend numba runs on the CPU")
        import jax

        try:
            jax.devices("cuda")
        except RuntimeError:
            raise UserError("--device cuda: JAX sees no CUDA device (install jax[cuda12] on "
                            "a machine with an NVIDIA GPU)") from None
    return name


def _has_jax() -> bool:
    try:
        import jax  # noqa: F401
    except ImportError:
        return False
    return True


def precision_of(backend: str, precision: str) -> str:
    """The precision ``auto`` resolves to: float64 (float32, JAX only, is opt-in)."""
    if precision not in PRECISIONS:
        raise UserError(f"unknown precision {precision!r}; choose one of "
                        f"{', '.join(PRECISIONS)}")
    if precision == "auto":  # float32 left the reference fit unmixed (README, "Fit speed")
        return "float64"
    if precision == "float32" and backend != "jax":
        raise UserError("--precision float32 needs --backend jax")
    return precision


def compile_model(model, backend: str, precision: str = "auto", device: str = "cpu"):
    """Compile the PyMC ``model`` for nutpie with ``backend`` (``jax`` or ``numba``).

    ``precision`` ``float32`` evaluates the JAX log density and gradient in single precision
    (the graph's float64 constants rounded; nutpie's integrator stays in float64); ``auto`` is
    float64 (:func:`precision_of`). The model's initial
    values (the run latents start at their measured dense errors) become nutpie's initial
    points, as the JAX path cannot carry them inside the model."""
    import nutpie

    precision = precision_of(backend, precision)
    if backend == "numba":
        return nutpie.compile_pymc_model(model)
    _jax_setup(device)
    init = {rv.name: v for rv, v in model.rvs_to_initial_values.items() if v is not None}
    for rv in model.free_RVs:
        model.set_initval(rv, None)
    try:
        compiled = nutpie.compile_pymc_model(model, backend="jax", gradient_backend="jax",
                                             initial_points=init)
    finally:
        for name, value in init.items():
            model.set_initval(model[name], value)
    return _float32(compiled) if precision == "float32" else compiled


def _jax_setup(device: str) -> None:
    """Point JAX at ``device`` and at a persistent compilation cache (XLA's compile of this
    model takes seconds; ``BAYES_PRUNE_JAX_CACHE=""`` turns the cache off)."""
    import jax

    jax.config.update("jax_platforms", "cuda,cpu" if device == "cuda" else "cpu")
    cache = os.environ.get("BAYES_PRUNE_JAX_CACHE",
                           os.path.join(os.path.expanduser("~"), ".cache", "bayes_prune", "jax"))
    if cache:
        jax.config.update("jax_compilation_cache_dir", cache)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


def _float32(compiled):
    """``compiled`` (nutpie's JAX model) with its log density and gradient traced and run with
    64-bit types off: float64 constants become float32, the sampler still sees float64."""
    import dataclasses

    import jax

    raw = compiled._raw_logp_fn
    names = list(compiled._shared_data)

    def value_and_grad(x, *shared):
        return jax.value_and_grad(lambda x: raw(x, *shared)[0])(x)

    jitted = jax.jit(value_and_grad)

    def make_logp_fn():
        def logp(x, **shared):
            with jax.enable_x64(False), warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # "float64 ... truncated"
                value, grad = jitted(np.asarray(x, np.float32),
                                     *[shared[n] for n in names])
                return float(value), np.asarray(grad, dtype=np.float64)
        return logp

    return dataclasses.replace(compiled, _make_logp_func=make_logp_fn)


def sample(compiled, *, tune: int, max_draws: int, chains: int, seed: int,
           target: Target | None, progress: bool, low_rank: bool, target_accept: float,
           cores: int | None = None):
    """Sample ``chains`` chains of ``tune`` + up to ``max_draws`` draws; with a ``target``,
    stop as soon as the draws so far meet it (:class:`Target`). Returns ``(idata, info)``:
    the posterior truncated to the shortest chain, and ``{"draws": per chain, "stopped":
    "target" | "max_draws", "restarts": [{"seed", "stuck"}, ...]}``. All chains run at once
    (``cores`` defaults to ``chains``): chains queued behind others could not stop early.
    Chains stuck by tuning step :data:`STUCK_STEP` (:func:`stuck_chains`) make the run start
    again from the next seed, at most :data:`RESTARTS` times; ``restarts`` lists the seeds
    abandoned and their stuck chains."""
    import nutpie

    restarts = []
    for attempt in range(RESTARTS + 1):
        run = nutpie.sample(compiled, draws=max_draws, tune=tune, chains=chains,
                            cores=cores or chains, seed=seed + attempt, progress_bar=progress,
                            low_rank_modified_mass_matrix=low_rank,
                            target_accept=target_accept, save_warmup=True, blocking=False)
        stuck = judge_start(run, tune)
        if not stuck or attempt == RESTARTS:
            break
        run.cancel()
        restarts.append({"seed": seed + attempt, "stuck": stuck})
        print(f"chain(s) {', '.join(map(str, stuck))} stuck by tuning step "
              f"{min(STUCK_STEP, tune)} (step size collapsed, or log density far below the "
              f"other chains'): starting again from seed {seed + attempt + 1}",
              file=sys.stderr)
    idata, info = _run_to_target(run, target, max_draws)
    return _without_warmup(idata), {**info, "restarts": restarts}


def _without_warmup(idata):
    """``idata`` without nutpie's warm-up groups (kept only to judge the chains' start)."""
    for group in ("warmup_posterior", "warmup_sample_stats"):
        if group in idata.groups():
            delattr(idata, group)
    return idata


def _run_to_target(run, target: Target | None, max_draws: int):
    """Wait for ``run``, stopping it at the first block of draws that meets ``target``."""
    if target is None:
        return run.wait(), {"draws": max_draws, "stopped": "max_draws"}
    # checked at whole blocks of draws, in order: where it stops depends on the draws only,
    # never on when a check ran, so a seed gives the same posterior. Blocks the checks had not
    # reached when the chains finished are checked on the final trace.
    checked, suspects = max(target.min_draws // target.block, 1) - 1, None
    while not finished(run):
        time.sleep(_CHECK_EVERY)
        so_far = look(run)
        if so_far is None:  # a trace caught between two batches: look again next time
            continue
        so_far = _truncate(so_far)
        checked, k, suspects = _first_block_meeting(so_far, checked, target, suspects)
        if k:
            return run.abort().isel(draw=slice(0, k)), {"draws": k, "stopped": "target"}
    idata = _truncate(run.wait())
    _, k, _ = _first_block_meeting(idata, checked, target, suspects)
    if k:
        return idata.isel(draw=slice(0, k)), {"draws": k, "stopped": "target"}
    return idata, {"draws": int(idata.posterior.sizes["draw"]), "stopped": "max_draws"}


def _first_block_meeting(idata, checked: int, target: Target, suspects=None
                         ) -> tuple[int, int, np.ndarray]:
    """Check the blocks after block ``checked`` that ``idata`` holds whole, in order. Returns
    the last block checked, the draws up to the first block that meets ``target`` (0 if none
    does) and the scalars that failed last (``suspects``, for the next call)."""
    flat = _flat(idata, target)
    suspects = np.arange(0) if suspects is None else suspects
    for k in range(checked + 1, flat.shape[1] // target.block + 1):
        checked = k
        ok, suspects = _meets_flat(flat[:, :k * target.block], target, suspects)
        if ok:
            return checked, k * target.block, suspects
    return checked, 0, suspects


# A block's check looks first at the scalars that failed the previous block (at most this
# many): a block that fails, as most do, then costs a few scalars' diagnostics instead of all
# of them (the reference fit: 536, 1.2 s a block, about 8 s of a fit's main thread).
_SUSPECTS = 16


def _flat(idata, target: Target) -> np.ndarray:
    """The checked variables of ``idata``'s posterior as one array ``(chains, draws, scalars)``."""
    post = idata.posterior
    names = [v for v in target.variables if v in post] if target.variables else list(post)
    arrays = [post[v].to_numpy() for v in names]
    return np.concatenate([a.reshape(*a.shape[:2], int(np.prod(a.shape[2:]))) for a in arrays],
                          axis=2)


def _diagnostics(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """R-hat and the smaller of bulk and tail ESS of each scalar of ``x`` ``(chains, draws,
    scalars)``, by ArviZ."""
    import arviz as az

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = az.convert_to_dataset(x)
        rhat = az.rhat(ds)["x"].to_numpy()
        ess = np.minimum(az.ess(ds, method="bulk")["x"].to_numpy(),
                         az.ess(ds, method="tail")["x"].to_numpy())
    return rhat, ess


def _meets_flat(x: np.ndarray, target: Target, suspects: np.ndarray
                ) -> tuple[bool, np.ndarray]:
    """Whether every scalar of ``x`` ``(chains, draws, scalars)`` meets ``target``, and the
    scalars to look at first next time: those of ``suspects`` are checked first, and if one
    fails the block fails without the rest (the same answer as checking every scalar)."""
    if x.shape[1] < target.min_draws:
        return False, suspects
    if len(suspects):
        rhat, ess = _diagnostics(x[:, :, suspects])
        bad = (rhat > target.rhat) | (ess < target.ess)
        if bad.any():
            return False, suspects[bad]
    rhat, ess = _diagnostics(x)
    bad = (rhat > target.rhat) | (ess < target.ess)
    worst = np.argsort(ess - 1e6 * np.maximum(rhat - target.rhat, 0))
    return not bad.any(), worst[:_SUSPECTS][bad[worst[:_SUSPECTS]]]


def _truncate(idata):
    """Every chain cut to the shortest one's finished draws (nutpie pads the rest with NaN)."""
    post = idata.posterior
    if post.sizes.get("draw", 0) == 0:
        return idata
    var = next(iter(post.data_vars))
    done = np.isfinite(post[var].to_numpy().reshape(post.sizes["chain"], post.sizes["draw"], -1)
                       ).all(axis=-1).sum(axis=1)
    n = int(done.min())
    return idata.isel(draw=slice(0, n))


def _meets(idata, target: Target) -> bool:
    """Whether the draws of ``idata`` meet ``target``."""
    return _meets_flat(_flat(idata, target), target, np.arange(0))[0]
