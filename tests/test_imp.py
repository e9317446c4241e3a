"""IMP with weight rewinding on a tiny task: the paper's protocol, by its properties."""

import pytest
import torch

from bayes_prune import imp, nets
from bayes_prune.spec import Recipe, RunConfig
from bayes_prune.store import Store
from bayes_prune.tasks import load_task

RECIPE = Recipe(steps=60, rewind_step=6, batch_size=64, lr=0.01)
CFG = RunConfig("digits", "mlp", 2, 16, 300, 0, 5, RECIPE)


@pytest.fixture
def spy(monkeypatch):
    """Records, at every call of imp.train, the start step and the weights it starts from."""
    calls = []
    real = imp.train

    def train(model, masks, data, recipe, start, generator, hooks=()):
        calls.append({"start": start, "masks": [m.clone() for m in masks],
                      "weights": [p.detach().clone() for _, p in nets.prunable(model)],
                      "state": {k: v.clone() for k, v in model.state_dict().items()}})
        return real(model, masks, data, recipe, start, generator, hooks)

    monkeypatch.setattr(imp, "train", train)
    return calls


def _run(tmp_path, cfg=CFG, name="s.sqlite", on_round=None):
    store = Store(tmp_path / name)
    imp.run_imp(cfg, store, on_round=on_round)
    return store


def test_rounds_density_zeros_and_biases(tmp_path):
    seen = []

    def check(round_, values):
        ckpt = store_ref[0].load_checkpoint(CFG.run_id)
        trained = ckpt["trained"]
        weights = [trained[name] for name in weight_names]
        for w, m in zip(weights, ckpt["masks"], strict=True):
            assert torch.all(w[m == 0] == 0)  # pruned weights exactly zero after training
        for k, v in trained.items():
            if k.endswith("bias"):
                assert torch.all(v != 0)  # biases are never pruned
        seen.append(values)

    model = nets.build_model("mlp", "digits", 2, 16)
    weight_names = [n for n, _ in nets.prunable(model)]
    store_ref = [Store(tmp_path / "s.sqlite")]
    imp.run_imp(CFG, store_ref[0], on_round=check)
    assert store_ref[0].rounds(CFG.run_id) == list(range(6))
    prunable = seen[0]["params_prunable"]
    for r, v in enumerate(seen):
        assert abs(v["density"] - 0.8**r) <= (r + 1) / prunable
        assert v["params_nonzero"] == v["params_total"] - prunable + round(v["density"]
                                                                             * prunable)
    assert store_ref[0].run_status(CFG.run_id) == "done"
    assert not store_ref[0].checkpoint_path(CFG.run_id).exists()


def test_rewinding_restores_w_k_on_survivors(tmp_path, spy):
    _run(tmp_path)
    dense, later = spy[0], spy[1:]
    assert dense["start"] == 0 and all(c["start"] == RECIPE.rewind_step for c in later)
    # W_k: replay round 0 up to the rewind step with the same seed and data order
    data = load_task("digits", 300, 0)
    torch.manual_seed(0)
    model = nets.build_model("mlp", "digits", 2, 16)
    short = Recipe(**{**RECIPE.__dict__, "steps": RECIPE.steps})
    w_k = {}

    def keep(step):
        if step == RECIPE.rewind_step:
            w_k.update({k: v.clone() for k, v in model.state_dict().items()})
    imp.train(model, spy[0]["masks"], data, short, 0, imp._generator(0, 0), hooks=(keep,))
    for call in later:
        for name, mask in zip([n for n, _ in nets.prunable(model)], call["masks"], strict=True):
            assert torch.equal(call["state"][name], w_k[name] * mask)
        assert torch.equal(call["state"]["1.bias"], w_k["1.bias"])


def test_same_seed_same_errors_on_cpu(tmp_path):
    a = _run(tmp_path, name="a.sqlite").export()
    b = _run(tmp_path, name="b.sqlite").export()
    assert a["test_error"].tolist() == b["test_error"].tolist()
    other = RunConfig("digits", "mlp", 2, 16, 300, 1, 5, RECIPE)
    c = _run(tmp_path, cfg=other, name="c.sqlite").export()
    assert a["test_error"].tolist() != c["test_error"].tolist()


def test_stops_near_random_guessing(tmp_path):
    # A width-1 network on 10 classes is near random guessing after a few rounds.
    cfg = RunConfig("digits", "mlp", 1, 2, 300, 0, 40, Recipe(steps=40, rewind_step=2,
                                                               lr=0.01))
    grid = _run(tmp_path, cfg=cfg).export()
    last = grid.iloc[-1]
    assert last["round"] < 40 and last["test_error"] >= 0.81
