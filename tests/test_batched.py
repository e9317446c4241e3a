"""A batch of same-shape runs reproduces each member's solo run (bayes_prune.batched)."""

import copy

import pytest
import torch

from bayes_prune.batched import run_batched
from bayes_prune.imp import plan, run_grid, run_imp
from bayes_prune.spec import Recipe, RunConfig
from bayes_prune.store import Store

RECIPE = Recipe(lr=0.01, steps=60, rewind_step=6, batch_size=32)


def _cfgs():
    return [RunConfig(task="digits", arch="mlp", depth=2, width=16, n_train=n, seed=s,
                      rounds=4, recipe=RECIPE) for n, s in ((300, 0), (500, 1), (300, 2))]


def test_batch_reproduces_each_solo_run(tmp_path):
    cfgs = _cfgs()
    solo, batch = Store(tmp_path / "solo.sqlite"), Store(tmp_path / "batch.sqlite")
    for c in cfgs:
        run_imp(c, solo)
    run_batched(cfgs, batch)
    a, b = (s.export().set_index(["run_id", "round"]).sort_index() for s in (solo, batch))
    assert list(a.index) == list(b.index) and len(a) == 3 * 5
    assert (a["density"] == b["density"]).all()
    assert ((a["test_mistakes"] - b["test_mistakes"]).abs() <= 1).all()
    assert ((a["train_loss"] - b["train_loss"]).abs() < 1e-4).all()
    assert all(batch.run_status(c.run_id) == "done" for c in cfgs)


def test_batch_weights_and_masks_match_solo_after_a_round(tmp_path):
    cfgs = [RunConfig(**{**c.__dict__, "rounds": 1}) for c in _cfgs()]
    solo, batch = Store(tmp_path / "s.sqlite"), Store(tmp_path / "b.sqlite")
    saved = {}
    for s, runner in ((solo, lambda: [run_imp(c, solo) for c in cfgs]),
                      (batch, lambda: run_batched(cfgs, batch))):
        orig = s.save_checkpoint
        s.save_checkpoint = lambda rid, st, s=s, orig=orig: (
            saved.setdefault(id(s), {}).__setitem__(rid, st), orig(rid, st))[1]
        runner()
    for c in cfgs:
        a, b = saved[id(solo)][c.run_id], saved[id(batch)][c.run_id]
        for m, n in zip(a["masks"], b["masks"], strict=True):
            assert torch.equal(m, n)
        for k in a["trained"]:
            torch.testing.assert_close(a["trained"][k], b["trained"][k], atol=2e-5, rtol=1e-4)
            torch.testing.assert_close(a["rewind"][k], b["rewind"][k], atol=2e-6, rtol=1e-5)


def test_plan_batches_fresh_mlp_runs_only():
    cfgs = _cfgs()
    cnn = RunConfig(task="digits", arch="cnn", depth=1, width=8, n_train=300, seed=0, rounds=2,
                    recipe=RECIPE)
    jobs = plan(cfgs + [cnn], status={cfgs[2].run_id: "running"})
    sizes = sorted(len(j) for j in jobs)
    assert sizes == [1, 1, 2]  # the cnn and the resumed run alone, two fresh MLPs together


@pytest.mark.parametrize("arch, depth, width", [("resnet", 8, 4), ("cnn", 2, 4)])
def test_grouped_members_equal_their_solo_runs(tmp_path, arch, depth, width):
    # CNNs and ResNets batch as grouped convolutions (on CUDA by default; run here on the CPU)
    recipe = Recipe(lr=0.01, steps=12, rewind_step=3, batch_size=32, augment="flip_crop",
                    optimizer="sgd", weight_decay=1e-4)
    cfgs = [RunConfig("digits", arch, depth, width, n, s, 1, recipe)
            for n, s in ((300, 0), (500, 1), (300, 2))]
    saved = {}
    for name, runner in (("solo", lambda s: [run_imp(c, s) for c in cfgs]),
                         ("batch", lambda s: run_batched(cfgs, s))):
        store = Store(tmp_path / f"{name}.sqlite")
        orig = store.save_checkpoint

        def spy(rid, state, name=name, orig=orig):  # a copy: solo states are live tensors
            saved.setdefault(name, {}).setdefault(rid, []).append(copy.deepcopy(state))
            orig(rid, state)
        store.save_checkpoint = spy
        runner(store)
    for c in cfgs:
        for a, b in zip(saved["solo"][c.run_id], saved["batch"][c.run_id], strict=True):
            assert a["values"]["density"] == b["values"]["density"]
            assert abs(a["values"]["test_mistakes"] - b["values"]["test_mistakes"]) <= 2
            for m, n in zip(a["masks"], b["masks"], strict=True):
                assert torch.equal(m, n)
            assert a["trained"].keys() == b["trained"].keys()  # BatchNorm statistics too
            for k in a["trained"]:
                torch.testing.assert_close(b["trained"][k], a["trained"][k], atol=1e-4,
                                           rtol=1e-3, msg=k)
                torch.testing.assert_close(b["rewind"][k], a["rewind"][k], atol=1e-5,
                                           rtol=1e-4, msg=k)


def test_plan_batches_cnn_and_resnet_on_cuda_only():
    cnn = [RunConfig("digits", "cnn", 1, 8, 300, s, 2, RECIPE) for s in (0, 1)]
    assert sorted(len(j) for j in plan(cnn, status={})) == [1, 1]
    assert sorted(len(j) for j in plan(cnn, status={}, device="cuda")) == [2]


def test_a_members_own_data_error_fails_that_member_alone(tmp_path):
    # one member asks for more training examples than digits has: it fails with its own
    # error, and the batch's other members train as if it had not been there
    bad = RunConfig(task="digits", arch="mlp", depth=2, width=16, n_train=5000, seed=1,
                    rounds=1, recipe=RECIPE)
    good = [RunConfig(**{**c.__dict__, "rounds": 1}) for c in _cfgs()[::2]]
    assert len(plan(good + [bad], status={})) == 1  # one batch of three
    store = tmp_path / "runs.sqlite"
    failures = run_grid(good + [bad], str(store), device="cpu")
    assert [(c.run_id, err.split(":")[0]) for c, err in failures] == [(bad.run_id, "UserError")]
    assert "n_train=5000" in failures[0][1]
    s = Store(store)
    assert s.run_status(bad.run_id) == "failed"
    assert all(s.run_status(c.run_id) == "done" for c in good)
    solo = Store(tmp_path / "solo.sqlite")
    for c in good:
        run_imp(c, solo)
    a, b = (t.export().set_index(["run_id", "round"]).sort_index() for t in (solo, s))
    assert list(a.index) == list(b.index)
    assert ((a["test_mistakes"] - b["test_mistakes"]).abs() <= 1).all()
