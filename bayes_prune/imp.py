"""Iterative magnitude pruning with weight rewinding (Frankle et al. 2020; the protocol of
Rosenfeld et al. 2021), one run at a time, resumable round by round.

Round 0 trains the dense network for ``steps`` steps and keeps the weights ``W_k`` it had at
``rewind_step``. Each later round prunes ``prune_fraction`` of the remaining prunable weights
by global magnitude, resets the survivors to ``W_k``, retrains steps ``k..T`` with the masks
enforced after every optimizer step, and evaluates on the full test set. A run stops at its
spec's ``rounds`` or once its test error is within ``stop_within`` (relative) of random
guessing: the law's slope and high plateau are only identified by data that reach it.

All randomness of round ``r`` (data order) comes from ``(seed, r)``, and initialisation from
``seed``: a run resumed from its checkpoint gives the numbers an uninterrupted run gives.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from . import __version__
from .augment import Minibatches, crop_flip
from .augment import check as check_augment
from .device import amp_dtype, autocast, compiled, conv_kernels, prepare, resolve_device
from .nets import build_model, count_params, prunable
from .prune import apply_masks, density, magnitude_prune
from .spec import Recipe, RunConfig
from .store import LeaseLost, Store
from .tasks import TaskData, load_task, task_info
from .workers import threads_for

__all__ = ["resolve_device", "train", "evaluate", "run_imp"]

EVAL_BATCH = 2048


def _lr(recipe: Recipe, step: int) -> float:
    if recipe.schedule == "cosine":
        scale = 0.5 * (1 + math.cos(math.pi * step / recipe.steps))
    elif recipe.schedule == "step":  # He et al. (2016): x0.1 at epochs 80 and 120 of 160
        scale = 0.1 ** ((step >= recipe.steps // 2) + (step >= recipe.steps * 3 // 4))
    else:
        scale = 1.0
    if step < recipe.warmup:
        scale *= (step + 1) / recipe.warmup
    return recipe.lr * scale


def _optimizer(recipe: Recipe, params, fused: bool = False) -> torch.optim.Optimizer:
    """The recipe's optimizer over ``params``; ``fused`` Adam runs one kernel per step."""
    if recipe.optimizer == "sgd":
        return torch.optim.SGD(params, lr=recipe.lr, momentum=recipe.momentum,
                               nesterov=recipe.nesterov, weight_decay=recipe.weight_decay)
    return torch.optim.Adam(params, lr=recipe.lr, weight_decay=recipe.weight_decay,
                            **({"fused": True} if fused else {}))


def train(model, masks: Sequence[torch.Tensor], data: TaskData, recipe: Recipe, start: int,
          generator: torch.Generator, hooks: Sequence[Callable[[int], None]] = ()) -> float:
    """Train ``model`` from step ``start`` to ``recipe.steps`` with ``masks`` enforced; each
    hook is called with the step number before that step. Returns the mean training loss of
    the last 100 steps. Runs on the device of ``data``, in the recipe's precision, compiled if
    the recipe says so (:mod:`bayes_prune.device`)."""
    device = data.x_train.device
    weights = [p for _, p in prunable(model)]
    opt = _optimizer(recipe, model.parameters())
    batches = Minibatches([data.y_train.numel()], recipe.batch_size, [generator], device,
                          recipe.augment)
    forward, amp = compiled(model, recipe.compile), amp_dtype(recipe.precision, device)
    losses: deque[torch.Tensor] = deque(maxlen=100)  # on the device: no sync per step
    model.train()
    with conv_kernels(model, device):
        for step in range(start, recipe.steps):
            for hook in hooks:
                hook(step)
            idx, draws = next(batches)
            x, y = data.x_train[idx[0]], data.y_train[idx[0]]
            if draws is not None:
                x = crop_flip(x, draws[0])
            for group in opt.param_groups:
                group["lr"] = _lr(recipe, step)
            with autocast(amp, device):
                loss = F.cross_entropy(forward(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            apply_masks(weights, masks)
            losses.append(loss.detach().float())
    return float(torch.stack(list(losses)).mean()) if losses else float("nan")


@torch.no_grad()
def evaluate(model, data: TaskData, precision: str = "fp32") -> int:
    """Number of test mistakes of ``model`` on the full test set, in ``precision`` (a recipe's
    ``precision``: the one it trained in)."""
    model.eval()
    wrong, amp = 0, amp_dtype(precision, data.x_test.device)
    with conv_kernels(model, data.x_test.device):
        for i in range(0, data.y_test.numel(), EVAL_BATCH):
            with autocast(amp, data.x_test.device):
                logits = model(data.x_test[i:i + EVAL_BATCH])
            wrong += int((logits.argmax(1) != data.y_test[i:i + EVAL_BATCH]).sum())
    return wrong


def _generator(seed: int, round_: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + round_)


def run_imp(cfg: RunConfig, store: Store, device: str = "cpu", data_dir: str | None = None,
            on_round: Callable[[int, dict], None] | None = None) -> bool:
    """Run (or resume) one IMP trajectory, storing every round as it finishes. Returns False,
    doing nothing, when the run is done or another live writer of the store holds it."""
    run_id, recipe = cfg.run_id, cfg.recipe
    check_augment(recipe.augment, task_info(cfg.task).input_shape)
    if not store.claim(cfg, device, __version__):
        return False
    prepare(device)
    data = load_task(cfg.task, cfg.n_train, cfg.seed, device=device, data_dir=data_dir)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.arch, cfg.task, cfg.depth, cfg.width).to(device)
    total, n_prunable = count_params(model)
    weights = [p for _, p in prunable(model)]
    ckpt = store.load_checkpoint(run_id)
    if ckpt is not None:
        model.load_state_dict(ckpt["trained"])
        rewind, masks = ckpt["rewind"], [m.to(device) for m in ckpt["masks"]]
        round_, last = int(ckpt["round"]), ckpt["values"]
        # A kill between checkpoint and commit leaves the round only in the checkpoint.
        store.add_round(run_id, round_, last, done=_finished(cfg, round_, last, data))
    else:
        round_, last = -1, None
        masks = [torch.ones_like(w) for w in weights]
    while last is None or not _finished(cfg, round_, last, data):
        round_ += 1
        started = time.perf_counter()
        if round_ == 0:
            loss, rewind = _train_dense(model, masks, data, recipe, cfg.seed)
        else:
            masks = magnitude_prune(weights, masks, recipe.prune_fraction)
            model.load_state_dict(rewind)
            apply_masks(weights, masks)
            loss = train(model, masks, data, recipe, recipe.rewind_step,
                         _generator(cfg.seed, round_))
        mistakes = evaluate(model, data, recipe.precision)
        kept = int(sum(m.sum() for m in masks))
        last = {"density": density(masks), "test_error": mistakes / data.y_test.numel(),
                "test_mistakes": mistakes, "n_test": data.y_test.numel(), "train_loss": loss,
                "params_total": total, "params_prunable": n_prunable,
                "params_nonzero": total - n_prunable + kept,
                "seconds": time.perf_counter() - started}
        # Checkpoint first, then commit: a kill in between is repaired on resume (above).
        store.save_checkpoint(run_id, {"round": round_, "values": last, "rewind": rewind,
                                       "masks": [m.cpu() for m in masks],
                                       "trained": model.state_dict()})
        store.add_round(run_id, round_, last, done=_finished(cfg, round_, last, data))
        if on_round is not None:
            on_round(round_, last)
    store.drop_checkpoint(run_id)
    return True


def _train_dense(model, masks, data, recipe: Recipe, seed: int) -> tuple[float, dict]:
    """Round 0: train the dense network, keeping its state at the rewind step (W_k)."""
    rewind: dict = {}

    def keep(step):
        if step == recipe.rewind_step:
            rewind.update({k: v.detach().clone() for k, v in model.state_dict().items()})

    loss = train(model, masks, data, recipe, 0, _generator(seed, 0), hooks=(keep,))
    return loss, rewind


def _finished(cfg: RunConfig, round_: int, values: dict, data: TaskData) -> bool:
    near_random = values["test_error"] >= (1 - cfg.recipe.stop_within) * data.info.random_error
    return round_ >= cfg.rounds or (round_ > 0 and near_random)


# ------------------------------------------------------------------------------ the grid

def _log_line(cfg: RunConfig, round_: int, v: dict) -> str:
    return (f"{cfg.arch}/{cfg.task} depth={cfg.depth} width={cfg.width} n_train={cfg.n_train} "
            f"seed={cfg.seed} round {round_:2d}: density {v['density']:.4g} test error "
            f"{v['test_error']:.4f} ({v['seconds']:.1f} s) [{cfg.run_id}]")


def _threads(cfg: RunConfig, members: int, workers: int) -> int:
    """Intra-op threads for a job of ``members`` runs of ``cfg``'s shape among ``workers``."""
    from .families import param_counts
    from .tasks import task_info

    prunable_ = param_counts(cfg.arch, cfg.task, cfg.depth, cfg.width)[1]
    return threads_for(prunable_, cfg.recipe.batch_size, task_info(cfg.task).input_shape,
                       conv=cfg.arch != "mlp", members=members, workers=workers)


def _run_one(cfg: RunConfig, store_path: str, device: str, data_dir: str | None,
             write: Callable[[str], None], bar: bool = True, workers: int = 1) -> str | None:
    """Run one config against the store at ``store_path``; returns an error text or None
    (done, or left to the writer that holds it)."""
    from tqdm.auto import tqdm

    torch.set_num_threads(_threads(cfg, 1, workers))
    store = Store(store_path)
    rounds = tqdm(total=cfg.rounds + 1, initial=len(store.rounds(cfg.run_id)), desc="rounds",
                  unit="round", leave=False, disable=not bar)

    def on_round(r, v):
        write(_log_line(cfg, r, v))
        rounds.update()

    try:
        run_imp(cfg, store, device, data_dir, on_round=on_round)
        return None
    except LeaseLost as exc:  # another writer runs it now: not a failure
        write(f"{exc}; left to it")
        return None
    except Exception as exc:  # one failed run must not end the grid; it is recorded
        store.fail(cfg.run_id, f"{type(exc).__name__}: {exc}")
        return f"{type(exc).__name__}: {exc}"
    finally:
        rounds.close()
        store.close()


def _worker(cfg, store_path, device, data_dir, workers):
    return _run_one(cfg, store_path, device, data_dir, write=print, bar=False, workers=workers)


def _run_batch(cfgs: Sequence[RunConfig], store_path: str, device: str,
               data_dir: str | None, write: Callable[[str], None],
               workers: int = 1) -> dict[str, str]:
    """Run fresh same-shape runs as one batch (:mod:`bayes_prune.batched`): the members this
    writer can claim that no writer has started; the others claimed alone, on the solo path.
    Returns each failed member's error, ``{run_id: message}``. A member whose own data fails
    is failed alone; on an error of the batch as a whole every claimed member not done is
    marked failed (a re-run resumes it on the solo path)."""
    from .batched import run_batched

    store = Store(store_path)
    fresh, started, errors = [], [], {}
    try:
        for c in cfgs:
            if store.claim(c, device, __version__):
                started_before = store.rounds(c.run_id) or store.checkpoint_path(c.run_id).exists()
                (started if started_before else fresh).append(c)
        if fresh:
            torch.set_num_threads(_threads(fresh[0], len(fresh), workers))
            errors = run_batched(fresh, store, device, data_dir,
                                 on_round=lambda c, r, v: write(_log_line(c, r, v)))
    except LeaseLost as exc:
        write(f"{exc}; left to it")
    except Exception as exc:
        err = f"{type(exc).__name__}: {exc}"
        for c in fresh:
            if store.run_status(c.run_id) != "done":
                store.fail(c.run_id, err)
                errors[c.run_id] = err
        return errors
    finally:
        store.close()
    for c in started:
        if err := _run_one(c, store_path, device, data_dir, write, bar=False, workers=workers):
            errors[c.run_id] = err
    return errors


def _worker_batch(cfgs, store_path, device, data_dir, workers):
    return _run_batch(cfgs, store_path, device, data_dir, write=print, workers=workers)


def plan(todo: Sequence[RunConfig], status: dict, batch: bool = True, max_batch: int = 64,
         device: str = "cpu") -> list[list[RunConfig]]:
    """Jobs for ``todo``: fresh runs of one shape and recipe together (at most ``max_batch``
    a job) where :func:`bayes_prune.batched.batchable` says so on ``device`` (MLPs; CNNs and
    ResNets on CUDA), every other run (other families, resumed runs) alone."""
    from .batched import batchable, group_key

    jobs: list[list[RunConfig]] = []
    groups: dict[tuple, list[RunConfig]] = {}
    for c in todo:
        if batch and batchable(c, device) and c.run_id not in status:
            groups.setdefault(group_key(c), []).append(c)
        else:
            jobs.append([c])
    for members in groups.values():
        jobs += [members[i:i + max_batch] for i in range(0, len(members), max_batch)]
    return jobs


POLL = 5.0  # seconds between looks at runs that other writers hold


def run_grid(runs: Sequence[RunConfig], store_path: str, device: str = "auto",
             workers: int = 1, data_dir: str | None = None, batch: bool = True,
             poll: float = POLL) -> list[tuple[RunConfig, str]]:
    """Run every config not yet done, in ``workers`` processes; return the failures. With
    ``batch``, fresh runs of one shape train together (:mod:`bayes_prune.batched`): MLPs,
    and on CUDA also CNNs and ResNets.

    Other processes may run the same grid into the same store at once: each run is claimed
    by one writer (:meth:`bayes_prune.store.Store.claim`). Runs that another live writer holds
    are waited for, and taken over if that writer dies; so when this returns no failures,
    every run is done."""
    from tqdm.auto import tqdm

    device = resolve_device(device)
    store = Store(store_path)
    bar = tqdm(total=len(runs), desc="runs", unit="run")
    failures: dict[str, tuple[RunConfig, str]] = {}
    waiting_for: set = set()
    try:
        while True:
            status = store.statuses()
            held = store.held_by_others()
            todo = [c for c in runs if status.get(c.run_id) != "done"]
            bar.update(len(runs) - len(todo) - bar.n)
            free = [c for c in todo if c.run_id not in held and c.run_id not in failures]
            if free:
                with _pool(workers) as pool:
                    jobs = plan(free, status, batch, device=device)
                    for job, err in _execute(jobs, pool, store_path, device, data_dir,
                                             workers):
                        failures.update({c.run_id: (c, err[c.run_id]) for c in job
                                         if c.run_id in err})
                continue
            waiting = {c.run_id for c in todo if c.run_id in held}
            if not waiting:
                break
            if waiting != waiting_for:
                waiting_for = waiting
                by = sorted({held[r].describe() for r in waiting})
                tqdm.write(f"waiting for {len(waiting)} run(s) that other writers hold: "
                           f"{'; '.join(by)}")
            time.sleep(poll)
    finally:
        bar.close()
        store.close()
    return list(failures.values())


def _pool(workers: int):
    """``workers`` spawned processes that die with this one (:func:`workers.die_with_parent`),
    or, for one worker, none (a null context: jobs run in this process)."""
    import concurrent.futures as cf
    import contextlib
    import multiprocessing as mp
    import os

    from .workers import die_with_parent

    if workers <= 1:
        return contextlib.nullcontext()
    return cf.ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"),
                                  initializer=die_with_parent, initargs=(os.getpid(),))


def _execute(jobs, pool, store_path, device, data_dir, workers):
    """Run ``jobs`` here (``pool`` None) or in ``pool``; yield ``(job, {run_id: error})`` as
    each ends, naming only the runs that failed. A worker that died (killed, out of memory)
    fails its whole job."""
    from tqdm.auto import tqdm

    if pool is None:
        for job in jobs:
            if len(job) == 1:
                err = _run_one(job[0], store_path, device, data_dir, write=tqdm.write)
                yield job, {job[0].run_id: err} if err else {}
            else:
                yield job, _run_batch(job, store_path, device, data_dir, write=tqdm.write)
        return
    import concurrent.futures as cf

    futures = {(pool.submit(_worker, job[0], store_path, device, data_dir, workers)
                if len(job) == 1 else
                pool.submit(_worker_batch, job, store_path, device, data_dir, workers)): job
               for job in jobs}
    for fut in cf.as_completed(futures):
        job = futures[fut]
        try:
            err = fut.result()
        except cf.process.BrokenProcessPool as exc:
            err = f"a worker process died ({exc})"
        if isinstance(err, str):
            err = {c.run_id: err for c in job}
        yield job, err or {}
