"""Batched IMP: K runs of one shape (seeds, dataset sizes) trained as one model.

A grid is hundreds of small networks; one at a time, each SGD step pays a fixed Python and
dispatch cost that dwarfs a width-16 matmul (and on a GPU leaves most of it idle). Here the K
members train as one network:

- MLPs (:class:`Stacked`): the weights stacked, ``(K, out, in)``, one batched matmul a layer;
- CNNs and ResNets (:class:`Grouped`): every layer K times as wide, convolutions in K groups
  (:func:`bayes_prune.nets.widen`), so member k is its own block of channels; BatchNorm
  normalises each channel over the batch, hence each member over its own examples only.

Per-member semantics are those of :func:`bayes_prune.imp.run_imp`, which stays the reference
(and the path for resumed runs, and for CNNs and ResNets on the CPU, see :func:`batchable`):

- initialisation: each member's solo model, built from ``torch.manual_seed(seed)``, stacked;
- data: each member's own subsample, in the order (and with the augmentation draws) its own
  generator ``(seed, round)`` draws, with a new permutation whenever its epoch runs out;
- loss: the sum over members of each member's mean cross-entropy, so each member's gradient
  is its solo gradient; Adam and SGD act elementwise, so each member's update is its solo
  update (up to float rounding in the batched matmul or grouped convolution);
- pruning: global magnitude pruning within each member (its layers only), rewinding to each
  member's own W_k;
- store: every member's round is checkpointed (in the solo format, so a killed batch resumes
  member by member on the solo path) and committed as it finishes; a member that is done
  (within 10 % of random guessing, or its last round) leaves the batch.
"""

from __future__ import annotations

import contextlib
import time
from collections import deque
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from . import __version__
from .augment import Minibatches, crop_flip
from .augment import check as check_augment
from .device import amp_dtype, autocast, compiled, conv_kernels, prepare
from .imp import EVAL_BATCH, _finished, _generator, _lr, _optimizer
from .nets import build_model, count_params, prunable, widen
from .prune import apply_masks, density, magnitude_prune
from .spec import Recipe, RunConfig
from .store import Held, Store
from .tasks import load_task, task_info

__all__ = ["batchable", "group_key", "run_batched"]


def batchable(cfg: RunConfig, device: str = "cpu") -> bool:
    """Whether the batched path takes ``cfg`` on ``device``: MLPs everywhere (stacked);
    CNNs and ResNets (grouped convolutions) on CUDA only. On the CPU, grouped convolutions
    are no faster than one network after another: three members' SGD steps at batch 128, one
    thread, took 0.69x (Fashion-MNIST CNN depth 1 x width 24), 1.12x (depth 2 x width 12),
    1.56x (ResNet-8 width 4) and 0.74x (ResNet-8 width 16) the time of three solo steps."""
    return cfg.arch == "mlp" or (cfg.arch in ("cnn", "resnet")
                                 and torch.device(device).type == "cuda")


def group_key(cfg: RunConfig) -> tuple:
    """Runs with equal keys can train as one batch: same task, shape and recipe."""
    return (cfg.task, cfg.arch, cfg.depth, cfg.width, cfg.rounds, cfg.recipe)


class Stacked:
    """The stacked parameters of K MLPs of one shape: ``weights[l]`` ``(K, out, in)``,
    ``biases[l]`` ``(K, out)``, with the solo models' state-dict names to map back."""

    def __init__(self, models: Sequence[torch.nn.Module], device="cpu"):
        self.names = [name for name, _ in prunable(models[0])]  # "<i>.weight"
        self.load_states([m.state_dict() for m in models], device)

    def parameters(self) -> list[torch.Tensor]:
        return [p for pair in zip(self.weights, self.biases, strict=True) for p in pair]

    def train(self, mode: bool = True) -> None:
        """No layer of an MLP depends on the mode (kept for :class:`Grouped`'s interface)."""

    def eval(self) -> None:
        """As :meth:`train`."""

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` ``(K, B, ...)`` -> logits ``(K, B, classes)``."""
        h = x.flatten(2)
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

    def load_states(self, states: Sequence[dict], device=None) -> None:
        """Make the members the solo models whose state dicts are ``states``."""
        device = device or self.weights[0].device

        def stack(key):
            return torch.stack([s[key] for s in states]).to(device).requires_grad_()
        self.weights = [stack(name) for name in self.names]
        self.biases = [stack(name[: -len("weight")] + "bias") for name in self.names]

    def keep(self, members: Sequence[int]) -> None:
        """Drop every member not in ``members`` (indices into the current batch)."""
        self.load_states([self.state(k) for k in members])


class Grouped:
    """K CNNs or ResNets of one shape as one network (:func:`bayes_prune.nets.widen`): member k
    is channels ``[k C, (k + 1) C)`` of every convolution and BatchNorm. ``weights[l]`` are
    ``(K, ...)`` views of the prunable weights, so masks and magnitude pruning see each
    member's layers as its solo model has them."""

    def __init__(self, models: Sequence[torch.nn.Module], device="cpu"):
        self.solo = models[0]  # the template of the layout
        self.solo_shapes = {k: v.shape for k, v in models[0].state_dict().items()}
        self.k, self.net = 0, None
        self.load_states([m.state_dict() for m in models], device)

    @property
    def weights(self) -> list[torch.Tensor]:
        return [w.view(self.k, *self.solo_shapes[name]) for name, w in prunable(self.net)]

    def parameters(self) -> list[torch.Tensor]:
        return list(self.net.parameters())

    def train(self, mode: bool = True) -> None:
        self.net.train(mode)

    def eval(self) -> None:
        self.net.eval()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` ``(K, B, C, ...)`` -> logits ``(K, B, classes)``."""
        wide = x.transpose(0, 1).reshape(x.shape[1], -1, *x.shape[3:])  # (B, K C, ...)
        return self.net(wide).transpose(0, 1)

    def state(self, k: int) -> dict[str, torch.Tensor]:
        """Member ``k``'s parameters and BatchNorm statistics as its solo state dict."""
        return {key: t.clone() if t.dim() == 0  # num_batches_tracked: one count for all
                else t.detach().view(self.k, *self.solo_shapes[key])[k].clone()
                for key, t in self.net.state_dict().items()}

    def load_states(self, states: Sequence[dict], device=None) -> None:
        """Make the members the solo models whose state dicts are ``states`` (a new network
        when their number changes)."""
        if self.k != len(states):
            device = device or next(self.net.parameters()).device
            self.k, self.net = len(states), widen(self.solo, len(states)).to(device)
        self.net.load_state_dict({key: states[0][key] if t.dim() == 0 else
                                  torch.stack([s[key] for s in states]).reshape(t.shape)
                                  for key, t in self.net.state_dict().items()})

    def keep(self, members: Sequence[int]) -> None:
        """Drop every member not in ``members`` (indices into the current batch)."""
        self.load_states([self.state(k) for k in members])


def _kernels(net: Stacked | Grouped, device):
    """:func:`bayes_prune.device.conv_kernels` of the grouped network (stacked MLPs have no
    convolutions)."""
    return conv_kernels(net.net, device) if isinstance(net, Grouped) else contextlib.nullcontext()


def train(net: Stacked | Grouped, masks: list[torch.Tensor], xs: torch.Tensor,
          ys: torch.Tensor, ns: Sequence[int], recipe: Recipe, start: int,
          gens: Sequence[torch.Generator],
          hooks: Sequence[Callable[[int], None]] = ()) -> list[float]:
    """Train every member from ``start`` to ``recipe.steps`` with its masks enforced. ``xs``
    ``(K, n_max, ...)``, ``ys`` ``(K, n_max)`` hold each member's training set (padded); returns
    each member's mean training loss over the last 100 steps. Device, precision, augmentation
    and compilation as in :func:`bayes_prune.imp.train`."""
    k, device = len(ns), xs.device
    batches = Minibatches(ns, recipe.batch_size, gens, device, recipe.augment)
    rows = torch.arange(k, device=device).unsqueeze(1)
    # fused: the per-op cost dominates small stacked models; the same update elementwise
    opt = _optimizer(recipe, net.parameters(), fused=True)
    forward, amp = compiled(net.__call__, recipe.compile), amp_dtype(recipe.precision, device)
    weights = net.weights
    losses: deque[torch.Tensor] = deque(maxlen=100)
    net.train()
    with _kernels(net, device):
        for step in range(start, recipe.steps):
            for hook in hooks:
                hook(step)
            for group in opt.param_groups:
                group["lr"] = _lr(recipe, step)
            idx, draws = next(batches)
            x, y = xs[rows, idx], ys[rows, idx]  # (K, B, ...), (K, B)
            if draws is not None:
                x = crop_flip(x.flatten(0, 1), draws.flatten(0, 1)).unflatten(0, idx.shape)
            with autocast(amp, device):
                logits = forward(x)
                per = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1),
                                      reduction="none").view(k, -1).mean(1)
            opt.zero_grad(set_to_none=True)
            per.sum().backward()
            opt.step()
            apply_masks(weights, masks)
            losses.append(per.detach().float())
    if not losses:
        return [float("nan")] * k
    return torch.stack(list(losses)).mean(0).tolist()


@torch.no_grad()
def evaluate(net: Stacked | Grouped, x_test: torch.Tensor, y_test: torch.Tensor,
             precision: str = "fp32") -> list[int]:
    """Test mistakes of every member on the (shared) test set."""
    net.eval()
    k = len(net.weights[0])
    wrong = torch.zeros(k, dtype=torch.long, device=x_test.device)
    amp = amp_dtype(precision, x_test.device)
    with _kernels(net, x_test.device):
        for i in range(0, y_test.numel(), EVAL_BATCH):
            x = x_test[i:i + EVAL_BATCH]
            with autocast(amp, x_test.device):
                logits = net(x.expand(k, *x.shape))
            wrong += (logits.argmax(-1) != y_test[i:i + EVAL_BATCH]).sum(1)
    return wrong.tolist()


def run_batched(cfgs: Sequence[RunConfig], store: Store, device: str = "cpu",
                data_dir: str | None = None,
                on_round: Callable[[RunConfig, int, dict], None] | None = None
                ) -> dict[str, str]:
    """Run fresh IMP runs of one :func:`group_key` as one batch, storing every member's
    rounds as :func:`bayes_prune.imp.run_imp` would.

    A member whose data cannot be loaded (its own ``n_train`` or seed) is marked failed in
    the store with its own error and left out; the others train. Returns those members'
    errors, ``{run_id: message}``. An error of the batch as a whole is raised."""
    if len({group_key(c) for c in cfgs}) != 1 or cfgs[0].arch not in ("mlp", "cnn", "resnet"):
        raise ValueError("a batch needs runs of one task, shape and recipe")
    recipe = cfgs[0].recipe
    check_augment(recipe.augment, task_info(cfgs[0].task).input_shape)
    prepare(device)
    for c in cfgs:  # claimed already when called from run_grid; then no second attempt
        if not store.claim(c, device, __version__):
            raise Held(f"run {c.run_id} is done or held by another writer of {store.path}")
    datas, kept, dropped = [], [], {}
    for c in cfgs:
        try:
            datas.append(load_task(c.task, c.n_train, c.seed, device=device,
                                   data_dir=data_dir))
            kept.append(c)
        except Exception as exc:  # this member's data: fail it alone
            dropped[c.run_id] = f"{type(exc).__name__}: {exc}"
            store.fail(c.run_id, dropped[c.run_id])
    cfgs = kept
    if not cfgs:
        return dropped
    models = []
    for c in cfgs:
        torch.manual_seed(c.seed)
        models.append(build_model(c.arch, c.task, c.depth, c.width))
    total, n_prunable = count_params(models[0])
    net = (Stacked if cfgs[0].arch == "mlp" else Grouped)(models, device)
    ns = [d.y_train.numel() for d in datas]
    n_max = max(ns)
    xs = torch.stack([F.pad(d.x_train.flatten(1), (0, 0, 0, n_max - n)).view(
        n_max, *d.x_train.shape[1:]) for d, n in zip(datas, ns, strict=True)])
    ys = torch.stack([F.pad(d.y_train, (0, n_max - n)) for d, n in zip(datas, ns, strict=True)])
    x_test, y_test, n_test = datas[0].x_test, datas[0].y_test, datas[0].y_test.numel()
    active = list(range(len(cfgs)))  # indices into cfgs, in batch order
    masks = [torch.ones_like(w) for w in net.weights]
    rewind: list[dict] = []  # each member's solo state dict at the rewind step (W_k)
    round_ = -1
    while active:
        round_ += 1
        started = time.perf_counter()
        gens = [_generator(cfgs[j].seed, round_) for j in active]
        if round_ == 0:
            def keep(step, out=rewind):
                if step == recipe.rewind_step:  # round 0: every member is active
                    out.extend(net.state(k) for k in range(len(cfgs)))
            losses = train(net, masks, xs, ys, ns, recipe, 0, gens, hooks=(keep,))
        else:
            per_member = [magnitude_prune([w[k] for w in net.weights],
                                          [m[k] for m in masks], recipe.prune_fraction)
                          for k in range(len(active))]
            masks = [torch.stack([pm[layer] for pm in per_member]).to(device)
                     for layer in range(len(masks))]
            net.load_states(rewind)
            apply_masks(net.weights, masks)
            losses = train(net, masks, xs, ys, ns, recipe, recipe.rewind_step, gens)
        mistakes = evaluate(net, x_test, y_test, recipe.precision)
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
            store.save_checkpoint(cfg.run_id, {"round": round_, "values": values,
                                               "rewind": rewind[k],
                                               "masks": [m.cpu() for m in member],
                                               "trained": net.state(k)})
            store.add_round(cfg.run_id, round_, values, done=done)
            if on_round is not None:
                on_round(cfg, round_, values)
            if done:
                store.drop_checkpoint(cfg.run_id)
            else:
                stay.append(k)
        if stay and len(stay) < len(active):
            sel = torch.tensor(stay, dtype=torch.long, device=net.weights[0].device)
            net.keep(stay)
            masks = [m[sel] for m in masks]
            rewind = [rewind[k] for k in stay]
            xs, ys = xs[sel], ys[sel]
            ns = [ns[k] for k in stay]
        active = [active[k] for k in stay]
    return dropped
