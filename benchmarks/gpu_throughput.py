"""IMP training throughput of CIFAR-10 ResNets on a GPU, and what the paper's grid would cost.

On CUDA: ResNet-20 (width 16, the paper's base) IMP runs of 3 rounds (dense + 2 pruning
rounds, ``--steps`` steps a round, batch 128), on real CIFAR-10 when ``--data-dir`` holds
``cifar-10-batches-py/``, else on synthetic data in the CIFAR-10 format (32x32x3 uint8 images,
10 classes, written to a temporary directory in the format's own pickle files). Without CUDA
the same code runs on the CPU at a tiny size (ResNet-8, width 4, a few steps) and says so.

Every configuration goes through the toolkit's own ``run_imp`` / ``run_batched`` with a
throw-away store, so each number includes what a grid run pays (evaluation, pruning,
rewinding, checkpoints):

- ``old path``: the training loop as it was before the GPU work (per-layer mask loop, indices
  moved to the device every step, float32, no augmentation), patched in here;
- ``solo``: one run, float32 or bf16 autocast, flip + crop or none, compiled or not;
- ``batched xK``: K seeds as one grouped network (:mod:`bayes_prune.batched`).

Prints images/s (training images a second, all members of a batch counted), peak GPU memory,
the old-vs-new ratio on the same ResNet, a ``--gpus-per-run`` packing advice (how many runs of
this size one device has room for, from the batched-vs-solo ratio: a proxy for Ray packing
separate runs onto one GPU, which the ratio bounds from above), and the projected wall time of
``experiments/cifar10_resnet_paper.toml`` on one GPU: every run at its upper bound of 41
trainings (dense + 40 rounds; most stop earlier, near random guessing), each step's time
scaled from the measured ResNet by its FLOPs per image, never below the smallest ResNet's
measured step time (small networks do not fill a GPU). The last line, for scripts:

    gpu_images_per_s=<x> projected_paper_grid_gpu_hours=<x>

(the best new-path configuration's images/s and the projection at it; on the CPU, CPU
numbers).

Usage: python benchmarks/gpu_throughput.py [--data-dir DIR] [--steps N] [--batch K]
       [--repeat R] [--no-compile]
"""

from __future__ import annotations

import argparse
import pickle
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from bayes_prune import imp, tasks
from bayes_prune.batched import run_batched
from bayes_prune.nets import prunable
from bayes_prune.spec import Recipe, RunConfig, load_spec
from bayes_prune.store import Store

PAPER = Path(__file__).parents[1] / "experiments" / "cifar10_resnet_paper.toml"


def synthetic_cifar(root: Path, n_train: int, n_test: int, seed: int = 0) -> Path:
    """CIFAR-10-format pickles (``data_batch_1``, ``test_batch``) of learnable synthetic
    images: a random 32x32x3 template per class plus noise, uint8."""
    rng = np.random.default_rng(seed)
    templates = rng.integers(0, 256, (10, 3 * 32 * 32))
    base = root / "cifar-10-batches-py"
    base.mkdir(parents=True, exist_ok=True)
    for name, n in (("data_batch_1", n_train), ("test_batch", n_test)):
        labels = np.arange(n) % 10
        noise = rng.integers(0, 256, (n, 3 * 32 * 32))
        data = (0.35 * templates[labels] + 0.65 * noise).astype(np.uint8)
        with open(base / name, "wb") as f:
            pickle.dump({b"data": data, b"labels": labels.tolist()}, f)
    return root


def old_train(model, masks, data, recipe, start, generator, hooks=()):
    """The training loop before the GPU path (kept verbatim here as the baseline)."""
    weights = [p for _, p in prunable(model)]
    opt = imp._optimizer(recipe, model.parameters())
    n = data.y_train.numel()
    order = torch.randperm(n, generator=generator)
    pos, losses = 0, []
    model.train()
    for step in range(start, recipe.steps):
        for hook in hooks:
            hook(step)
        if pos + recipe.batch_size > n:
            order, pos = torch.randperm(n, generator=generator), 0
        idx = order[pos:pos + recipe.batch_size].to(data.x_train.device)
        pos += recipe.batch_size
        for group in opt.param_groups:
            group["lr"] = imp._lr(recipe, step)
        loss = F.cross_entropy(model(data.x_train[idx]), data.y_train[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            for w, m in zip(weights, masks, strict=True):
                w.mul_(m)
        losses.append(loss.detach())
    return float(torch.stack(losses[-100:]).mean()) if losses else float("nan")


def resnet_flops(depth: int, width: int, side: int = 32, c_in: int = 3) -> int:
    """Forward FLOPs per image of the CIFAR ResNet (convolutions; 2 per multiply-add)."""
    blocks, ch_in = (depth - 2) // 6, width
    macs = 9 * c_in * width * side * side
    for stage in range(3):
        ch, hw = width * 2**stage, (side // 2**stage) ** 2
        for _ in range(blocks):
            macs += 9 * ch_in * ch * hw + 9 * ch * ch * hw + (ch_in * ch * hw if ch_in != ch
                                                               else 0)
            ch_in = ch
    return 2 * macs


def measure(cfgs, device, data_dir, old=False) -> tuple[float, float]:
    """Run ``cfgs`` (one: solo; several: one batch) to the end; (images/s, peak GiB)."""
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    real = imp.train
    imp.train = old_train if old else real
    try:
        with tempfile.TemporaryDirectory() as tmp:
            store = Store(Path(tmp) / "s.sqlite")
            start = time.perf_counter()
            if len(cfgs) == 1:
                imp.run_imp(cfgs[0], store, device, data_dir)
            else:
                run_batched(cfgs, store, device, data_dir)
            if device == "cuda":
                torch.cuda.synchronize()
            seconds = time.perf_counter() - start
            rounds = len(store.rounds(cfgs[0].run_id))
            store.close()
    finally:
        imp.train = real
    r = cfgs[0].recipe
    images = len(cfgs) * r.batch_size * (r.steps + (rounds - 1) * (r.steps - r.rewind_step))
    memory = torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else float("nan")
    return images / seconds, memory


def project(images_per_s: float, ref: tuple[int, int], floor_step_s: float) -> float:
    """Hours of the paper grid on one device: per run 41 trainings at the spec's recipe, a
    step's time scaled from ``ref`` (depth, width) by FLOPs, at least ``floor_step_s``."""
    spec = load_spec(PAPER)
    r = spec.recipe
    ref_step = r.batch_size / images_per_s  # at the measured network and this batch size
    total = 0.0
    for run in spec.runs():
        step = max(ref_step * resnet_flops(run.depth, run.width) / resnet_flops(*ref),
                   floor_step_s * r.batch_size / 128)
        total += step * (r.steps + spec.rounds * (r.steps - r.rewind_step))
    return total / 3600


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=None, help="directory with cifar-10-batches-py/")
    ap.add_argument("--steps", type=int, default=None,
                    help="steps a round (default: 400 on CUDA, 12 on the CPU)")
    ap.add_argument("--batch", type=int, default=3, help="runs in a batch (default: 3)")
    ap.add_argument("--no-compile", action="store_true", help="skip the compiled rows")
    ap.add_argument("--repeat", type=int, default=None,
                    help="rounds over all rows, each row's best kept (default: 1 on CUDA, 3 "
                         "on the CPU, whose cores other jobs may share)")
    args = ap.parse_args()
    device = imp.resolve_device("auto")
    cuda = device == "cuda"
    torch.set_num_threads(1)  # CPU: one thread, as grid workers run
    depth, width = (20, 16) if cuda else (8, 4)
    steps = args.steps or (400 if cuda else 12)
    tmp = tempfile.TemporaryDirectory()
    real = args.data_dir and (Path(args.data_dir) / "cifar-10-batches-py" / "test_batch").is_file()
    n_train = 50_000 if real else (10_000 if cuda else 1_000)
    data_dir = args.data_dir if real else str(synthetic_cifar(Path(tmp.name), n_train,
                                                              2_000 if cuda else 500))
    where = (f"CUDA ({torch.cuda.get_device_name()})" if cuda else
             "CPU, one thread: no CUDA device here, so the same code runs at a tiny size; "
             "these are CPU numbers, not GPU ones")
    print(f"device: {where}")
    print(f"ResNet-{depth} width {width}, IMP 3 rounds x {steps} steps of batch 128, "
          f"{'CIFAR-10' if real else 'synthetic CIFAR-10-format data'}, n_train {n_train}")
    base = Recipe(optimizer="sgd", lr=0.05, momentum=0.9, nesterov=False, weight_decay=1e-4,
                  schedule="step", batch_size=128, steps=steps, rewind_step=max(1, steps // 16),
                  stop_within=0.0, precision="fp32")

    def cfgs(k=1, **change):
        recipe = Recipe(**{**base.__dict__, **change})
        return [RunConfig("cifar10", "resnet", depth, width, n_train, s, 2, recipe)
                for s in range(k)]

    rows = [("old path: mask loop, fp32, no augmentation", cfgs(augment="none"), True),
            ("solo fp32, no augmentation", cfgs(augment="none"), False),
            ("solo fp32, flip+crop", cfgs(augment="flip_crop"), False),
            ("solo bf16, flip+crop", cfgs(augment="flip_crop", precision="bf16"), False)]
    if not args.no_compile:
        rows.append(("solo bf16, flip+crop, compiled",
                     cfgs(augment="flip_crop", precision="bf16", compile=True), False))
    rows += [(f"batched x{args.batch} fp32, flip+crop",
              cfgs(args.batch, augment="flip_crop"), False),
             (f"batched x{args.batch} bf16, flip+crop",
              cfgs(args.batch, augment="flip_crop", precision="bf16"), False)]
    tasks.load_task("cifar10", n_train, 0, data_dir=data_dir)  # read the files once, untimed
    measure(cfgs(augment="none", steps=4, rewind_step=1), device, data_dir)  # warm-up
    if cuda and not torch.cuda.is_bf16_supported():  # before Ampere: no bf16 autocast
        rows = [row for row in rows if row[1][0].recipe.precision != "bf16"]
    print(f"{'configuration':<44} {'images/s':>10} {'peak GiB':>9}")
    rates: dict[str, float] = {}
    for label, group, old in rows * (args.repeat or (1 if cuda else 3)):
        if group[0].recipe.compile and label not in rates:  # compile once (cached), then time
            start = time.perf_counter()
            short = Recipe(**{**group[0].recipe.__dict__, "steps": 4, "rewind_step": 1})
            measure([RunConfig(**{**group[0].__dict__, "recipe": short})], device, data_dir)
            print(f"  (compiling the step took {time.perf_counter() - start:.1f} s, once per "
                  "process and network shape; not in the row below)")
        rate, memory = measure(group, device, data_dir, old=old)
        rates[label] = max(rate, rates.get(label, 0.0))
        print(f"{label:<44} {rate:>10.1f} {memory:>9.2f}" if cuda else
              f"{label:<44} {rate:>10.1f} {'-':>9}")
    print("best of each row:")
    for label in rates:
        print(f"{label:<44} {rates[label]:>10.1f}")
    old, new = rates[rows[0][0]], rates[rows[1][0]]
    print(f"new path / old path, same ResNet, fp32, no augmentation: {new / old:.2f}x "
          f"({new:.1f} vs {old:.1f} images/s)")
    solo = max(v for k, v in rates.items() if k.startswith("solo"))
    together = max(v for k, v in rates.items() if k.startswith("batched"))
    share = max(1, min(args.batch, round(together / solo)))
    print(f"packing: {args.batch} runs as one batch move {together / solo:.2f}x the images of "
          f"the best solo run, so the device has room for about {share} runs of this size: "
          f"--gpus-per-run {1 / share:.2g} (check that {share} x the peak memory fits)")
    best_label = max((k for k in rates if not k.startswith("old")), key=rates.get)
    best = rates[best_label]
    best_recipe = next(group[0].recipe for label, group, _ in rows if label == best_label)
    smallest = RunConfig("cifar10", "resnet", 8, 4, n_train, 0, 2, best_recipe)
    floor = 128 / (best if not cuda else measure([smallest], device, data_dir)[0])
    hours = project(best, (depth, width), floor)
    print(f"best: {best_label}; projected {PAPER.name} (525 runs x at most 41 trainings of "
          f"62,500 steps) on one {'GPU' if cuda else 'CPU thread'}: {hours:,.0f} h")
    print(f"gpu_images_per_s={best:.1f} projected_paper_grid_gpu_hours={hours:.1f}")
    tmp.cleanup()


if __name__ == "__main__":
    main()
