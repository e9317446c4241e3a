"""IMP training throughput: batched same-shape MLPs vs a plain one-model-at-a-time loop.

The same set of runs, MNIST-1D MLPs of depth 2 at each width, 3 seeds x 3 dataset sizes (9
models a width), trains for the same number of steps with the same recipe (Adam, batch 128,
masks enforced after every step, as an IMP round does) through

(a) the baseline written here: a plain PyTorch loop, one model after another;
(b) the batched path, ``bayes_prune.batched.train``: the 9 models stacked, one batched
    matmul per layer per step.

Prints, per width, the wall time per model-epoch of both, their ratio, and the achieved
GFLOP/s (6 x batch x weights per model-step: forward and backward) against the matmul peak
measured in the same process. The last line, for scripts:

    speedup_small=<x> speedup_512=<x> peak_fraction=<x>

``speedup_small`` pools the widths <= 128 (total baseline time / total batched time);
``peak_fraction`` is the batched path's GFLOP/s over the peak at widths >= 256.

Usage: python benchmarks/imp_throughput.py [--steps 300] [--widths 16 32 64 128 256 512]
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from bayes_prune.batched import Stacked, train
from bayes_prune.nets import build_model, prunable
from bayes_prune.spec import Recipe
from bayes_prune.tasks import load_task

SEEDS, SIZES = (0, 1, 2), (1000, 2000, 4000)


def matmul_peak(n: int = 1024, reps: int = 20) -> float:
    """GFLOP/s of a square float32 matmul, best of a few tries."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        for _ in range(reps):
            torch.mm(a, b)
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 * reps / best / 1e9


def baseline(datas, width: int, recipe: Recipe, steps: int) -> float:
    """One model at a time: the loop a researcher writes first. Returns seconds."""
    start = time.perf_counter()
    for seed, data in datas:
        torch.manual_seed(seed)
        model = build_model("mlp", "mnist1d", 2, width)
        weights = [p for _, p in prunable(model)]
        masks = [torch.ones_like(w) for w in weights]
        opt = torch.optim.Adam(model.parameters(), lr=recipe.lr)
        gen = torch.Generator().manual_seed(seed)
        n = data.y_train.numel()
        order, pos = torch.randperm(n, generator=gen), 0
        for _ in range(steps):
            if pos + recipe.batch_size > n:
                order, pos = torch.randperm(n, generator=gen), 0
            idx = order[pos:pos + recipe.batch_size]
            pos += recipe.batch_size
            loss = F.cross_entropy(model(data.x_train[idx]), data.y_train[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            with torch.no_grad():
                for w, m in zip(weights, masks, strict=True):
                    w.mul_(m)
    return time.perf_counter() - start


def batched(datas, width: int, recipe: Recipe, steps: int) -> float:
    """The batched path on the same models and data. Returns seconds."""
    start = time.perf_counter()
    models = []
    for seed, _ in datas:
        torch.manual_seed(seed)
        models.append(build_model("mlp", "mnist1d", 2, width))
    net = Stacked(models)
    ns = [d.y_train.numel() for _, d in datas]
    xs = torch.stack([F.pad(d.x_train.flatten(1), (0, 0, 0, max(ns) - n))
                      for (_, d), n in zip(datas, ns, strict=True)])
    ys = torch.stack([F.pad(d.y_train, (0, max(ns) - n)) for (_, d), n in
                      zip(datas, ns, strict=True)])
    masks = [torch.ones_like(w) for w in net.weights]
    gens = [torch.Generator().manual_seed(seed) for seed, _ in datas]
    train(net, masks, xs, ys, ns, Recipe(lr=recipe.lr, steps=steps, rewind_step=0,
                                         batch_size=recipe.batch_size, schedule="constant"),
          0, gens)
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=300, help="steps per model (default: 300)")
    ap.add_argument("--widths", type=int, nargs="+", default=[16, 32, 64, 128, 256, 512])
    args = ap.parse_args()
    recipe = Recipe(lr=0.003, batch_size=128, steps=args.steps, rewind_step=0)
    datas = [(seed, load_task("mnist1d", n, seed)) for seed in SEEDS for n in SIZES]
    mean_n = sum(d.y_train.numel() for _, d in datas) / len(datas)
    model_epochs = len(datas) * args.steps * recipe.batch_size / mean_n
    peak = matmul_peak()
    print(f"{torch.get_num_threads()} torch threads; matmul peak {peak:.1f} GFLOP/s; "
          f"{len(datas)} models a width, {args.steps} steps each, batch {recipe.batch_size}")
    print(f"{'width':>6} {'baseline s/model-epoch':>23} {'batched s/model-epoch':>22} "
          f"{'speedup':>8} {'GFLOP/s base':>13} {'GFLOP/s batched':>16}")
    baseline(datas[:2], args.widths[0], recipe, 20)  # warm up both paths: the first
    batched(datas[:2], args.widths[0], recipe, 20)  # calls pay one-off allocation costs
    small = [0.0, 0.0]
    at = {}
    for width in args.widths:
        weights = sum(p.numel() for _, p in prunable(build_model("mlp", "mnist1d", 2, width)))
        flops = 6 * recipe.batch_size * weights * args.steps * len(datas)
        base = baseline(datas, width, recipe, args.steps)
        fast = batched(datas, width, recipe, args.steps)
        if width <= 128:
            small[0] += base
            small[1] += fast
        at[width] = (base / fast, flops / fast / 1e9 / peak)
        print(f"{width:>6} {base / model_epochs:>23.4f} {fast / model_epochs:>22.4f} "
              f"{base / fast:>8.2f} {flops / base / 1e9:>13.1f} {flops / fast / 1e9:>16.1f}")
    big = [w for w in at if w >= 256]
    speedup_small = small[0] / small[1] if small[1] else float("nan")
    speedup_512 = at[512][0] if 512 in at else float("nan")
    peak_fraction = max(at[w][1] for w in big) if big else float("nan")
    print(f"speedup_small={speedup_small:.2f} speedup_512={speedup_512:.2f} "
          f"peak_fraction={peak_fraction:.2f}")


if __name__ == "__main__":
    main()
