"""IMP with weight rewinding on a tiny task: the paper's protocol, by its properties."""

import pytest
import torch

from bayes_prune import device, imp, nets
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


# ------------------------------------------------------- the GPU path, exercised on the CPU

def _cifar_format(n=64, seed=0):
    """Synthetic data in the CIFAR-10 format (32x32x3 uint8 images, 10 classes), standardised
    as load_task does, as a TaskData."""
    from bayes_prune.tasks import TaskData, task_info

    g = torch.Generator().manual_seed(seed)
    raw = torch.randint(0, 256, (2 * n, 32, 32, 3), dtype=torch.uint8, generator=g)
    x = raw.permute(0, 3, 1, 2).float() / 255.0
    x = (x - x.mean()) / x.std()
    y = torch.randint(0, 10, (2 * n,), generator=g)
    return TaskData(task_info("cifar10"), x[:n], y[:n], x[n:], y[n:])


def _train_copy(recipe, data, steps_seed=0, arch=("resnet", 8, 4)):
    torch.manual_seed(0)
    model = nets.build_model(arch[0], "cifar10", arch[1], arch[2])
    masks = [torch.ones_like(w) for _, w in nets.prunable(model)]
    loss = imp.train(model, masks, data, recipe, 0, imp._generator(steps_seed, 0))
    return model, loss


def test_bf16_autocast_runs_bf16_and_agrees_with_fp32():
    data = _cifar_format()
    torch.manual_seed(0)
    model = nets.build_model("resnet", "cifar10", 8, 4).eval()
    with torch.no_grad():
        ref = model(data.x_test)
        with device.autocast(torch.bfloat16, "cpu"):
            low = model(data.x_test)
    assert low.dtype == torch.bfloat16
    torch.testing.assert_close(low.float(), ref, atol=0.05 * float(ref.abs().max()), rtol=0.05)
    recipe = Recipe(steps=20, rewind_step=1, batch_size=16, lr=0.01, augment="flip_crop")
    seen = []
    _, loss32 = _train_copy(recipe, data)
    torch.manual_seed(0)
    model = nets.build_model("resnet", "cifar10", 8, 4)
    model[0].register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    masks = [torch.ones_like(w) for _, w in nets.prunable(model)]
    bf16 = Recipe(**{**recipe.__dict__, "precision": "bf16"})
    loss16 = imp.train(model, masks, data, bf16, 0, imp._generator(0, 0))
    assert set(seen) == {torch.bfloat16}
    assert all(p.dtype == torch.float32 for p in model.parameters())  # master weights
    assert abs(loss16 - loss32) < 0.05 * loss32
    assert device.amp_dtype("auto", "cpu") is None  # CPU grids keep their float32 numbers


def test_step_schedule_and_heavy_ball_momentum():
    r = Recipe(steps=160, lr=0.1, schedule="step", rewind_step=1)
    assert [imp._lr(r, s) for s in (0, 79, 80, 119, 120, 159)] == pytest.approx(
        [0.1, 0.1, 0.01, 0.01, 0.001, 0.001])
    opt = imp._optimizer(Recipe(optimizer="sgd", nesterov=False), [torch.zeros(1)])
    assert opt.param_groups[0]["nesterov"] is False


def test_new_recipe_fields_keep_old_run_ids():
    # ids computed before the fields existed (nesterov, augment, precision, compile)
    assert CFG.run_id == "798b697f7fe05dbd"
    assert RunConfig("cifar10", "resnet", 20, 16, 50000, 0, 40, Recipe(
        optimizer="sgd", lr=0.1, weight_decay=1e-4, steps=62500, rewind_step=2000)
    ).run_id == "8348b62213941314"


def test_augmented_run_is_deterministic_and_masks_hold(tmp_path):
    cfg = RunConfig("digits", "resnet", 8, 4, 300, 0, 2, Recipe(
        steps=20, rewind_step=2, batch_size=32, lr=0.01, augment="flip_crop"))
    a = _run(tmp_path, cfg=cfg, name="a.sqlite").export()
    b = _run(tmp_path, cfg=cfg, name="b.sqlite").export()
    assert a["test_mistakes"].tolist() == b["test_mistakes"].tolist()
    plain = RunConfig(**{**cfg.__dict__, "recipe": Recipe(steps=20, rewind_step=2,
                                                          batch_size=32, lr=0.01)})
    assert plain.run_id != cfg.run_id


@pytest.mark.slow
def test_compiled_step_agrees_with_eager():
    data = _cifar_format(n=32)
    recipe = Recipe(steps=4, rewind_step=1, batch_size=8, lr=0.01, schedule="constant")
    eager, loss_e = _train_copy(recipe, data, arch=("cnn", 1, 4))
    fast, loss_c = _train_copy(Recipe(**{**recipe.__dict__, "compile": True}), data,
                               arch=("cnn", 1, 4))
    assert loss_c == pytest.approx(loss_e, rel=1e-4)
    for (name, p), q in zip(eager.named_parameters(), fast.parameters(), strict=True):
        torch.testing.assert_close(q, p, atol=1e-5, rtol=1e-4, msg=name)


def test_small_1x1_convolutions_run_on_pytorchs_own_kernels_on_the_cpu():
    from bayes_prune.device import conv_kernels

    def inside(model, dev):
        with conv_kernels(model, dev):
            return torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled
    before = torch.backends.mkldnn.enabled
    small, wide = (nets.build_model("resnet", "cifar10", 8, w) for w in (4, 16))
    assert not inside(small, "cpu")  # oneDNN's 1x1 kernel hangs below 8 channels
    assert inside(wide, "cpu") == before and inside(small, "cuda") == before
    assert inside(nets.widen(small, 3), "cpu") is False  # per group, as the batched path has
    assert inside(nets.build_model("cnn", "mnist1d", 2, 4), "cpu") == before  # no 1x1 conv
    assert torch.backends.mkldnn.enabled == before
