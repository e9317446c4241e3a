"""Backend choice and sampling to an ESS target (bayes_prune.sampler)."""

import arviz as az
import numpy as np
import pytest

from bayes_prune.errors import UserError
from bayes_prune.sampler import Target, _meets, _truncate, backend_of, precision_of, sample


def test_backend_and_precision_resolve_and_refuse_with_the_allowed_values():
    assert backend_of("numba") == "numba"
    assert backend_of("auto") in ("jax", "numba")
    assert precision_of("jax", "auto") == "float64"
    assert precision_of("jax", "float32") == "float32"
    assert precision_of("numba", "auto") == "float64"
    with pytest.raises(UserError, match="choose one of auto, jax, numba"):
        backend_of("stan")
    with pytest.raises(UserError, match="needs --backend jax"):
        precision_of("numba", "float32")
    with pytest.raises(UserError, match="--device cuda"):
        backend_of("numba", "cuda")


def test_device_cuda_without_a_gpu_says_so_in_one_line():
    pytest.importorskip("jax")
    import jax

    if any(d.platform == "gpu" for d in jax.devices()):
        pytest.skip("a GPU is here")
    with pytest.raises(UserError, match="JAX sees no CUDA device"):
        backend_of("auto", "cuda")


def test_chains_are_cut_to_the_shortest_finished_one():
    x = np.random.default_rng(0).normal(size=(3, 10, 2))
    x[1, 7:] = np.nan  # nutpie pads a chain still running with NaN
    x[2, 9:] = np.nan
    out = _truncate(az.from_dict(posterior={"a": x}))
    assert out.posterior.sizes["draw"] == 7 and np.isfinite(out.posterior["a"]).all()


def test_chains_that_finish_before_a_check_stop_at_the_same_block_as_if_checked(monkeypatch):
    """Where sampling stops must not depend on when the checks ran: chains that finished
    before any check are cut at the first block that meets the target, as a check would."""
    import nutpie

    x = np.random.default_rng(5).normal(size=(4, 300, 3))
    trace = az.from_dict(posterior={"a": x})

    class Finished:  # nutpie's background run, done before the first look at it
        is_finished = True

        def wait(self):
            return trace

        inspect = wait

    monkeypatch.setattr(nutpie, "sample", lambda *a, **k: Finished())
    target = Target(ess=100.0, min_draws=50, block=50)
    idata, info = sample(None, tune=0, max_draws=300, chains=4, seed=0, target=target,
                         progress=False, low_rank=False, target_accept=0.8)
    first = next(k for k in range(50, 301, 50) if _meets(trace.isel(draw=slice(0, k)), target))
    assert first < 300 and info == {"draws": first, "stopped": "target", "restarts": []}
    assert idata.posterior.sizes["draw"] == first


@pytest.mark.slow
def test_fit_stops_at_the_ess_target_on_a_block_and_is_reproducible():
    from bayes_prune.fit import fit
    from bayes_prune.synthetic import default_truths, simulate_grid

    truths = dict(list(default_truths().items())[:2])
    grid = simulate_grid(truths, depths=(2, 4), widths=(16, 64), n_trains=(1000, 4000),
                         seeds=(0, 1), rounds=8, prune_fraction=0.6, rel_noise=0.03,
                         n_test=2000, rng=3)
    # at the default 0.85 this grid diverges and would be sampled twice (tests/test_fit.py)
    runs = [fit(grid, draws=1000, tune=300, chains=4, seed=2, progress=False,
                discrepancy=False, ess_target=100.0, target_accept=0.95) for _ in range(2)]
    s = runs[0].meta["settings"]
    assert s["stopped"] == "target" and s["draws"] % Target().block == 0
    assert s["draws"] < 1000 and runs[0].diagnostics["min_ess_bulk"] >= 100
    np.testing.assert_array_equal(runs[0].draws["theta"], runs[1].draws["theta"])


def test_checking_the_last_blocks_failures_first_gives_the_full_checks_answer():
    """A block's check looks first at the scalars that failed the block before (a shortcut):
    the first block meeting the target must be the one that ArviZ, every scalar checked, finds."""
    from bayes_prune.sampler import _first_block_meeting

    rng = np.random.default_rng(3)
    fast = rng.normal(size=(4, 600, 20))
    slow = rng.normal(size=(4, 600, 2))  # AR(1), rho 0.8: ESS about a ninth of the draws
    for t in range(1, 600):
        slow[:, t] += 0.8 * slow[:, t - 1]
    trace = az.from_dict(posterior={"a": fast, "b": slow})
    found = set()
    for ess in (50.0, 150.0, 250.0, 5000.0):
        target = Target(ess=ess, rhat=1.05, min_draws=100, block=50)

        def full(k, target=target, ess=ess):
            post = trace.posterior.isel(draw=slice(0, k))
            return (float(az.rhat(post).to_array().max()) <= target.rhat and
                    all(float(az.ess(post, method=m).to_array().min()) >= ess
                        for m in ("bulk", "tail")))

        want = next((k for k in range(100, 601, 50) if full(k)), 0)
        assert _first_block_meeting(trace, 1, target)[:2] == (want // 50 if want else 12, want)
        # and block by block, as the sampler's looks call it, the failures carried along
        checked, k, suspects = 1, 0, None
        for n in range(100, 601, 50):
            checked, k, suspects = _first_block_meeting(trace.isel(draw=slice(0, n)), checked,
                                                        target, suspects)
            if k:
                break
        assert k == want
        found.add(want)
    assert len(found) >= 3  # blocks early, late and never: the shortcut had cases to get wrong


def _warmup_trace(step_sizes, logp=None, draws=60):
    """A finished nutpie-like trace whose chains tuned with ``step_sizes`` (chains, steps)."""
    steps = np.asarray(step_sizes, dtype=float)
    rng = np.random.default_rng(0)
    logp = rng.normal(1000.0, 10.0, size=steps.shape) if logp is None else logp
    return az.from_dict(posterior={"a": rng.normal(size=(steps.shape[0], draws))},
                        warmup_posterior={"a": rng.normal(size=steps.shape)},
                        warmup_sample_stats={"step_size": steps, "logp": logp},
                        save_warmup=True)


def test_a_chain_collapsed_or_far_below_is_stuck_a_slow_tuner_or_another_mode_is_not():
    from bayes_prune.sampler import STUCK_STEP, stuck_chains

    rng = np.random.default_rng(1)
    healthy = np.exp(rng.normal(np.log(0.2), 0.4, size=(4, 300)))
    lp = rng.normal(17_000.0, 16.0, size=(4, 300))  # in the typical set: sd sqrt(d / 2)
    assert stuck_chains(healthy, lp, 300) == []
    slow = healthy.copy()
    slow[1] /= 8  # tuning at an eighth of the others' step: slow, not stuck
    assert stuck_chains(slow, lp, 300) == []
    mode = lp.copy()
    mode[0] -= 30.0  # a second mode the data leave open: two spreads lower, not stuck
    assert stuck_chains(healthy, mode, 300) == []
    stuck = healthy.copy()
    stuck[2, 10:] = 0.0009  # the chain stuck at its start (experiments/README)
    assert stuck_chains(stuck, lp, 300) == [2]
    far = lp.copy()
    far[3] = -28_000.0  # a chain far below the typical set at a healthy step size
    assert stuck_chains(healthy, far, 300) == [3]
    late = healthy.copy()
    late[3, STUCK_STEP:] = 1e-5  # what happens after the judged step is not judged
    assert stuck_chains(late, lp, 300) == []
    assert stuck_chains(stuck, lp, 40) == [2]  # a short tuning is judged at its end
    assert stuck_chains(stuck[:1], lp[:1], 300) == []  # one chain: nothing to compare with
    unfinished = stuck.copy()
    unfinished[0, 50:] = np.nan
    with pytest.raises(ValueError, match="every chain"):
        stuck_chains(unfinished, lp, 300)


class _Run:
    """nutpie's background run, finished, with ``trace`` as its result."""

    def __init__(self, trace):
        self.trace, self.cancelled, self.is_finished = trace, False, True

    def inspect(self):
        return self.trace

    wait = inspect

    def cancel(self):
        self.cancelled = True


@pytest.mark.parametrize("stuck_seeds", [(0,), (0, 1, 2)])
def test_stuck_chains_start_again_from_the_next_seed(monkeypatch, capsys, stuck_seeds):
    """A run with a stuck chain is cancelled and sampled again from seed + 1, at most
    RESTARTS times; the result carries no warm-up groups and names the seeds given up."""
    import nutpie

    from bayes_prune.sampler import RESTARTS

    healthy = np.full((4, 300), 0.2)
    stuck = healthy.copy()
    stuck[1] = 0.0005
    runs = {}

    def fake(*a, seed, **k):
        runs[seed] = _Run(_warmup_trace(stuck if seed in stuck_seeds else healthy))
        return runs[seed]

    monkeypatch.setattr(nutpie, "sample", fake)
    idata, info = sample(None, tune=300, max_draws=60, chains=4, seed=0, target=None,
                         progress=False, low_rank=False, target_accept=0.8)
    given_up = [s for s in stuck_seeds if s < RESTARTS]
    assert info["restarts"] == [{"seed": s, "stuck": [1]} for s in given_up]
    assert sorted(runs) == list(range(len(given_up) + 1))
    assert [runs[s].cancelled for s in sorted(runs)] == [True] * len(given_up) + [False]
    assert not any(g.startswith("warmup") for g in idata.groups())
    assert "starting again from seed 1" in capsys.readouterr().err


def test_the_start_is_judged_once_every_chain_has_its_first_tuning_steps(monkeypatch):
    """Looks before the chains' first steps (no warm-up group yet) or before every chain has
    reached the judged step wait; the judgement then reads the first steps alone."""
    from bayes_prune import chain_start

    monkeypatch.setattr(chain_start, "_JUDGE_EVERY", 0.0)
    stuck = np.full((4, 300), 0.2)
    stuck[1] = 0.0005
    partial = stuck.copy()
    partial[2, 60:] = np.nan  # chain 2 has not reached step 100 yet
    looks = iter([az.from_dict(posterior={"a": np.zeros((4, 0))}),
                  _warmup_trace(partial), _warmup_trace(stuck)])

    class Running(_Run):
        def inspect(self):
            return next(looks)

    run = Running(None)
    run.is_finished = False
    assert chain_start.judge_start(run, 300) == [1]
    assert chain_start.judge_start(Running(None), 0) == []  # no tuning: nothing to judge
