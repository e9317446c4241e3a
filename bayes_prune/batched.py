"""Batched IMP: K runs of one MLP shape (seeds, dataset sizes) trained as one stacked model.

A grid is hundreds of small networks; one at a time, each SGD step pays a fixed Python and
dispatch cost that dwarfs a width-16 matmul. Here the K members' weights are stacked,
``(K, out, in)``, and every step is one batched matmul per layer. Per-member semantics are
those of :func:`bayes_prune.imp.run_imp`, which stays the reference (and the path for other
families and for resumed runs):

- initialisation: each member's solo model, built from ``torch.manual_seed(seed)``, stacked;
- data: each member's own subsample, in the order its own generator ``(seed, round)`` draws,
  with a new permutation whenever its epoch runs out;
- loss: the sum over members of each member's mean cross-entropy, so each member's gradient
  is its solo gradient; Adam and SGD act elementwise, so each member's update is its solo
  update (up to float rounding in the batched matmul);
- pruning: global magnitude pruning within each member (its layers only), rewinding to each
  member's own W_k;
- store: every member's round is checkpointed (in the solo format, so a killed batch resumes
  member by member on the solo path) and committed as it finishes; a member that is done
  (within 10 % of random guessing, or its last round) leaves the batch.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from . import __version__
from .imp import EVAL_BATCH, _finished, _generator, _lr, _optimizer
from .nets import build_model, count_params, prunable
from .prune import density, magnitude_prune
from .spec import Recipe, RunConfig
from .store import Held, Store
from .tasks import load_task

__all__ = ["batchable", "group_key", "run_batched"]


def batchable(cfg: RunConfig) -> bool:
    """Families the batched path covers (MLPs)."""
    return cfg.arch == "mlp"


def group_key(cfg: RunConfig) -> tuple:
    """Runs with equal keys can train as one batch: same task, shape and recipe."""
    return (cfg.task, cfg.arch, cfg.depth, cfg.width, cfg.rounds, cfg.recipe)


class Stacked:
    """The stacked parameters of K MLPs of one shape: ``weights[l]`` ``(K, out, in)``,
    ``biases[l]`` ``(K, out)``, with the solo models' state-dict names to map back."""

    def __init__(self, models: Sequence[torch.nn.Module]):
        self.names = [name for name, _ in prunable(models[0])]  # "<i>.weight"
        mods = [[m for m in model.modules() if isinstance(m, torch.nn.Linear)]
                for model in models]
        self.weights = [torch.stack([ms[i].weight.detach() for ms in mods]).requires_grad_()
                        for i in range(len(mods[0]))]
        self.biases = [torch.stack([ms[i].bias.detach() for ms in mods]).requires_grad_()
                       for i in range(len(mods[0]))]

    def parameters(self) -> list[torch.Tensor]:
        return [p for pair in zip(self.weights, self.biases, strict=True) for p in pair]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` ``(K, B, D)`` or ``(B, D)`` (shared) -> logits ``(K, B, classes)``."""
        h = x
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            h = torch.matmul(h, w.transpose(1, 2)) + b.unsqueeze(1)
            if i < last:
                h = torch.relu(h)
        return h

    def state(self, k: int) -> dict[str, torch.Tensor]:
        """Member ``k``'s parameters as its solo model's state dict."""
        out = {}
        for name, w, b in zip(self.names, self.weights, self.biases, strict=True):
            out[name] = w[k].detach().clone()
            out[name[: -len("weight")] + "bias"] = b[k].detach().clone()
        return out

    def snapshot(self) -> list[torch.Tensor]:
        return [p.detach().clone() for p in self.parameters()]

    def load(self, snap: Sequence[torch.Tensor]) -> None:
        with torch.no_grad():
            for p, s in zip(self.parameters(), snap, strict=True):
                p.copy_(s)

    def keep(self, members: torch.Tensor) -> None:
        """Drop every member not in ``members`` (indices into the current batch)."""
        self.weights = [w.detach()[members].clone().requires_grad_() for w in self.weights]
        self.biases = [b.detach()[members].clone().requires_grad_() for b in self.biases]


def _orders(n: int, batch: int, start: int, steps: int, gen: torch.Generator) -> torch.Tensor:
    """The minibatch indices, ``(steps - start, batch)``, that the solo loop draws."""
    order, pos, rows = torch.randperm(n, generator=gen), 0, []
    for _ in range(start, steps):
        if pos + batch > n:
            order, pos = torch.randperm(n, generator=gen), 0
        rows.append(order[pos:pos + batch])
        pos += batch
    return torch.stack(rows) if rows else torch.empty(0, batch, dtype=torch.long)


def train(net: Stacked, masks: list[torch.Tensor], xs: torch.Tensor, ys: torch.Tensor,
          ns: Sequence[int], recipe: Recipe, start: int, gens: Sequence[torch.Generator],
          hooks: Sequence[Callable[[int], None]] = ()) -> list[float]:
    """Train every member from ``start`` to ``recipe.steps`` with its masks enforced. ``xs``
    ``(K, n_max, D)``, ``ys`` ``(K, n_max)`` hold each member's training set (padded); returns
    each member's mean training loss over the last 100 steps."""
    k = len(ns)
    idx = torch.stack([_orders(n, recipe.batch_size, start, recipe.steps, g)
                       for n, g in zip(ns, gens, strict=True)], dim=1).to(xs.device)
    rows = torch.arange(k, device=xs.device).unsqueeze(1)
    # fused: the per-op cost dominates small stacked models; the same update elementwise
    opt = _optimizer(recipe, net.parameters(), fused=True)
    losses = []
    for s, step in enumerate(range(start, recipe.steps)):
        for hook in hooks:
            hook(step)
        for group in opt.param_groups:
            group["lr"] = _lr(recipe, step)
        i = idx[s]
        logits = net(xs[rows, i])
        per = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), ys[rows, i].reshape(-1),
                              reduction="none").view(k, -1).mean(1)
        opt.zero_grad(set_to_none=True)
        per.sum().backward()
        opt.step()
        with torch.no_grad():
            for w, m in zip(net.weights, masks, strict=True):
                w.mul_(m)
        losses.append(per.detach())
    if not losses:
        return [float("nan")] * k
    return torch.stack(losses[-100:]).mean(0).tolist()


@torch.no_grad()
def evaluate(net: Stacked, x_test: torch.Tensor, y_test: torch.Tensor) -> list[int]:
    """Test mistakes of every member on the (shared) test set."""
    wrong = torch.zeros(net.weights[0].shape[0], dtype=torch.long)
    for i in range(0, y_test.numel(), EVAL_BATCH):
        logits = net(x_test[i:i + EVAL_BATCH].flatten(1))
        wrong += (logits.argmax(-1) != y_test[i:i + EVAL_BATCH]).sum(1).cpu()
    return wrong.tolist()


def run_batched(cfgs: Sequence[RunConfig], store: Store, device: str = "cpu",
                data_dir: str | None = None,
                on_round: Callable[[RunConfig, int, dict], None] | None = None) -> None:
    """Run fresh IMP runs of one :func:`group_key` as one batch, storing every member's
    rounds as :func:`bayes_prune.imp.run_imp` would."""
    if len({group_key(c) for c in cfgs}) != 1 or not all(batchable(c) for c in cfgs):
        raise ValueError("a batch needs MLP runs of one task, shape and recipe")
    recipe = cfgs[0].recipe
    datas = [load_task(c.task, c.n_train, c.seed, device=device, data_dir=data_dir)
             for c in cfgs]
    models = []
    for c in cfgs:
        torch.manual_seed(c.seed)
        models.append(build_model(c.arch, c.task, c.depth, c.width))
    total, n_prunable = count_params(models[0])
    net = Stacked(models)
    net.weights = [w.detach().to(device).requires_grad_() for w in net.weights]
    net.biases = [b.detach().to(device).requires_grad_() for b in net.biases]
    ns = [d.y_train.numel() for d in datas]
    n_max = max(ns)
    xs = torch.stack([F.pad(d.x_train.flatten(1), (0, 0, 0, n_max - n)) for d, n in
                      zip(datas, ns, strict=True)])
    ys = torch.stack([F.pad(d.y_train, (0, n_max - n)) for d, n in zip(datas, ns, strict=True)])
    x_test, y_test, n_test = datas[0].x_test, datas[0].y_test, datas[0].y_test.numel()
    for c in cfgs:  # claimed already when called from run_grid; then no second attempt
        if not store.claim(c, device, __version__):
            raise Held(f"run {c.run_id} is done or held by another writer of {store.path}")
    active = list(range(len(cfgs)))  # indices into cfgs, in batch order
    masks = [torch.ones_like(w) for w in net.weights]
    rewind: list[torch.Tensor] = []
    round_ = -1
    while active:
        round_ += 1
        started = time.perf_counter()
        gens = [_generator(cfgs[j].seed, round_) for j in active]
        if round_ == 0:
            def keep(step, out=rewind):
                if step == recipe.rewind_step:
                    out.extend(net.snapshot())
            losses = train(net, masks, xs, ys, ns, recipe, 0, gens, hooks=(keep,))
        else:
            per_member = [magnitude_prune([w[k] for w in net.weights],
                                          [m[k] for m in masks], recipe.prune_fraction)
                          for k in range(len(active))]
            masks = [torch.stack([pm[layer] for pm in per_member]).to(device)
                     for layer in range(len(masks))]
            net.load(rewind)
            with torch.no_grad():
                for w, m in zip(net.weights, masks, strict=True):
                    w.mul_(m)
            losses = train(net, masks, xs, ys, ns, recipe, recipe.rewind_step, gens)
        mistakes = evaluate(net, x_test, y_test)
        seconds = (time.perf_counter() - started) / len(active)
        stay = []
        for k, j in enumerate(active):
            cfg = cfgs[j]
            member = [m[k] for m in masks]
            kept = int(sum(m.sum() for m in member))
            values = {"density": density(member), "test_error": mistakes[k] / n_test,
                      "test_mistakes": mistakes[k], "n_test": n_test, "train_loss": losses[k],
                      "params_total": total, "params_prunable": n_prunable,
                      "params_nonzero": total - n_prunable + kept, "seconds": seconds}
            done = _finished(cfg, round_, values, datas[j])
            names = net.names
            snap = {n: r[k].clone() for n, r in zip(
                [x for name in names for x in (name, name[:-6] + "bias")], rewind,
                strict=True)}
            store.save_checkpoint(cfg.run_id, {"round": round_, "values": values,
                                               "rewind": snap, "masks": [m.cpu() for m in
                                                                         member],
                                               "trained": net.state(k)})
            store.add_round(cfg.run_id, round_, values, done=done)
            if on_round is not None:
                on_round(cfg, round_, values)
            if done:
                store.drop_checkpoint(cfg.run_id)
            else:
                stay.append(k)
        if len(stay) < len(active):
            sel = torch.tensor(stay, dtype=torch.long, device=net.weights[0].device)
            net.keep(sel)
            masks = [m[sel] for m in masks]
            rewind = [r[sel] for r in rewind]
            xs, ys = xs[sel], ys[sel]
            ns = [ns[k] for k in stay]
            active = [active[k] for k in stay]
