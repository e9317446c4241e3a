"""Record the IMP runs of a user's own training code into a bayes_prune store.

:class:`Recorder` writes one run's rounds into the same SQLite store that ``bayes-prune grid
run`` writes (:class:`~bayes_prune.store.Store`), each round committed as it is logged, so
``grid export``, ``grid status`` and ``fit`` read it unchanged. It is resumable: opening it again
on the same store and configuration continues the same run, logging a stored round again with the
same values does nothing, and logging one with other values is refused.

:func:`imp_loop` runs iterative magnitude pruning with weight rewinding on the user's own model
through ``torch.nn.utils.prune.global_unstructured`` (L1, global over every Linear and Conv
weight), calling the user's ``train_fn`` and ``eval_fn`` and logging every round to a
Recorder; a killed loop resumes from its last finished round. This module imports torch only
inside :func:`imp_loop`.
"""

from __future__ import annotations

import hashlib
import json
import math
import numbers
import os
from collections.abc import Callable

from . import __version__
from .errors import UserError
from .store import Store
from .tasks import TASKS

__all__ = ["Recorder", "imp_loop"]


class Recorder:
    """One IMP run of the user's own code, recorded round by round into the store at
    ``store_path`` (created if new).

    The run is identified by (task, arch, depth, width, n_train, seed, params_total): the same
    values open the same run again. ``params_total`` counts every parameter of the dense
    network; ``params_prunable`` the weights pruning acts on (default: all of them). A task
    bayes_prune does not know needs ``random_error`` or ``n_classes`` (random_error = 1 - 1/n).
    """

    def __init__(self, store_path: str | os.PathLike, *, task: str, arch: str, depth: int,
                 width: int, n_train: int, seed: int, params_total: int,
                 params_prunable: int | None = None, random_error: float | None = None,
                 n_classes: int | None = None):
        for name, value, low in (("depth", depth, 1), ("width", width, 1),
                                 ("n_train", n_train, 1), ("seed", seed, None),
                                 ("params_total", params_total, 1),
                                 ("params_prunable", params_prunable, 1),
                                 ("n_classes", n_classes, 2)):
            if value is None and name in ("params_prunable", "n_classes"):
                continue
            if not _is_int(value) or (low is not None and value < low):
                want = "an integer" + (f" >= {low}" if low is not None else "")
                raise UserError(f"Recorder: {name}={value!r} is not {want}")
        if not isinstance(task, str) or not task or not isinstance(arch, str) or not arch:
            raise UserError(f"Recorder: task={task!r} and arch={arch!r} must be non-empty names")
        if n_classes is not None:
            if random_error is not None:
                raise UserError("Recorder: give random_error or n_classes, not both")
            random_error = 1.0 - 1.0 / n_classes
        if random_error is not None and not (isinstance(random_error, (int, float))
                                             and 0 < random_error < 1):
            raise UserError(f"Recorder: random_error={random_error!r} is not in (0, 1)")
        if random_error is None and task not in TASKS:
            raise UserError(f"Recorder: task {task!r} is not one bayes_prune knows "
                            f"({', '.join(TASKS)}); give random_error= or n_classes=")
        self.config = {"task": task, "arch": arch, "depth": int(depth), "width": int(width),
                       "n_train": int(n_train), "seed": int(seed),
                       "params_total": int(params_total), "source": "recorder"}
        key = json.dumps(self.config, sort_keys=True)
        self.run_id = hashlib.sha256(key.encode()).hexdigest()[:16]
        self.params_prunable = int(params_prunable or params_total)
        if self.params_prunable > params_total:
            raise UserError(f"Recorder: params_prunable={params_prunable} exceeds "
                            f"params_total={params_total}")
        if random_error is not None:
            self.config["random_error"] = float(random_error)
        self.store = Store(store_path)
        self.store.open_run(self.run_id, json.dumps(self.config, sort_keys=True), task, arch,
                            int(depth), int(width), int(n_train), int(seed), "user",
                            __version__)

    @property
    def seed(self) -> int:
        return self.config["seed"]

    @property
    def rounds(self) -> list[int]:
        """The rounds stored so far."""
        return self.store.rounds(self.run_id)

    @property
    def done(self) -> bool:
        return self.store.run_status(self.run_id) == "done"

    def log(self, round: int, *, density: float, test_error: float, n_test: int,
            params_nonzero: int | None = None, params_prunable: int | None = None,
            train_loss: float | None = None, seconds: float | None = None) -> None:
        """Commit one finished round: its density (fraction of prunable weights left), test
        error and test-set size. A round already stored with the same values is left as it is;
        with other values, or with a density that does not fall as rounds rise, it is refused.
        ``params_nonzero`` defaults to the weights outside pruning plus density x prunable."""
        if not _is_int(round) or round < 0:
            raise UserError(f"Recorder.log: round={round!r} is not an integer >= 0")
        for name, value, ok, want in (
                ("density", density, lambda v: 0 < v <= 1, "in (0, 1]"),
                ("test_error", test_error, lambda v: 0 <= v <= 1, "in [0, 1]")):
            if not isinstance(value, (int, float)) or not math.isfinite(value) or not ok(value):
                raise UserError(f"Recorder.log: round {round}: {name}={value!r} is not {want}")
        if not _is_int(n_test) or n_test < 1:
            raise UserError(f"Recorder.log: round {round}: n_test={n_test!r} is not a positive "
                            "integer")
        prunable = int(params_prunable or self.params_prunable)
        total = self.config["params_total"]
        nonzero = (int(params_nonzero) if params_nonzero is not None
                   else total - prunable + round_half(density * prunable))
        values = {"density": float(density), "test_error": float(test_error),
                  "test_mistakes": round_half(test_error * n_test), "n_test": int(n_test),
                  "train_loss": train_loss, "params_total": total,
                  "params_prunable": prunable, "params_nonzero": nonzero, "seconds": seconds}
        stored = self.store.round_values(self.run_id)
        if round in stored:
            old = stored[round]
            same = all(math.isclose(old[k], values[k], rel_tol=1e-9, abs_tol=1e-12)
                       for k in ("density", "test_error", "n_test"))
            if same:
                return
            raise UserError(
                f"Recorder.log: round {round} of run {self.run_id} is stored with density "
                f"{old['density']:.6g}, test_error {old['test_error']:.6g}, n_test "
                f"{old['n_test']:g}; logged again with {density:.6g}, {test_error:.6g}, "
                f"{n_test}: a round is recorded once")
        for r, old in stored.items():
            if (r < round and old["density"] <= density) or (r > round and
                                                                old["density"] >= density):
                raise UserError(f"Recorder.log: round {round}: density {density:.6g} does not "
                                f"fall from round {r}'s {old['density']:.6g}; densities fall "
                                "as rounds rise")
        self.store.add_round(self.run_id, int(round), values, done=False)

    def finish(self) -> None:
        """Mark the run done (``grid status`` counts it so)."""
        self.store.finish(self.run_id)

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _is_int(value) -> bool:
    return (isinstance(value, numbers.Real) and not isinstance(value, bool)
            and math.isfinite(float(value)) and float(value).is_integer())


def round_half(x: float) -> int:
    """``x`` rounded to the nearest integer (halves away from zero, as counts are)."""
    return int(math.floor(x + 0.5))


def imp_loop(model, train_fn: Callable, eval_fn: Callable, recorder: Recorder, *,
             rounds: int, rewind_step: int, fraction: float = 0.2) -> None:
    """IMP with weight rewinding on ``model``, every round logged to ``recorder``.

    - ``train_fn(model, start, stop)`` trains ``model`` from step ``start`` to step ``stop``
      (``None``: the end of the schedule); it builds its optimizer from ``model.parameters()``
      on every call (pruned layers hold ``weight_orig``, masked by ``torch.nn.utils.prune``).
    - ``eval_fn(model) -> (test_error, n_test)``.

    Round 0 trains the dense model (``train_fn(model, 0, rewind_step)``, then keeps the weights
    W_k, then ``train_fn(model, rewind_step, None)``); each of rounds 1..``rounds`` prunes
    ``fraction`` of the remaining Linear and Conv weights by global L1 magnitude
    (``prune.global_unstructured``), resets every parameter and buffer to W_k, and retrains
    from ``rewind_step``. Density after r rounds is about (1 - fraction)^r. Before each round
    torch's global RNG is seeded with (recorder's seed, round), so a resumed run repeats an
    uninterrupted one's numbers when ``train_fn`` draws its randomness from torch. Each round is
    checkpointed beside the store, then logged; a loop killed at any point resumes from its
    last finished round. A run already done returns at once.
    """
    import torch
    from torch import nn
    from torch.nn.utils import prune

    if not _is_int(rounds) or rounds < 0 or not _is_int(rewind_step) or rewind_step < 0:
        raise UserError(f"imp_loop: rounds={rounds!r} and rewind_step={rewind_step!r} must be "
                        "integers >= 0")
    if not 0 < fraction < 1:
        raise UserError(f"imp_loop: fraction={fraction!r} is not in (0, 1)")
    if recorder.done:
        return
    kinds = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
    named = [(n, m) for n, m in model.named_modules() if isinstance(m, kinds)]
    targets = [(m, "weight") for _, m in named]
    n_prunable = sum(m.weight.numel() for _, m in named)
    n_total = sum(p.numel() for p in model.parameters())
    if n_total != recorder.config["params_total"]:
        raise UserError(f"imp_loop: the model has {n_total} parameters; the Recorder was "
                        f"given params_total={recorder.config['params_total']}")
    store = recorder.store
    ckpt = store.load_checkpoint(recorder.run_id)
    if ckpt is not None:
        model.load_state_dict(ckpt["trained"])
        for name, m in named:
            prune.custom_from_mask(m, "weight", ckpt["masks"][name])
        round_, rewind = int(ckpt["round"]), ckpt["rewind"]
        recorder.log(round_, **ckpt["values"])  # a kill between checkpoint and log
    else:
        round_ = -1
    while round_ < rounds:
        round_ += 1
        torch.manual_seed(recorder.seed * 1_000_003 + round_)
        if round_ == 0:
            train_fn(model, 0, rewind_step)
            rewind = _plain_state(model)
            train_fn(model, rewind_step, None)
        else:
            scores = {(m, "weight"): _effective(m).detach() for m in (t[0] for t in targets)}
            prune.global_unstructured(targets, pruning_method=prune.L1Unstructured,
                                      importance_scores=scores, amount=fraction)
            _rewind(model, rewind)
            train_fn(model, rewind_step, None)
        test_error, n_test = eval_fn(model)
        masks = {name: (m.weight_mask if hasattr(m, "weight_mask")
                        else torch.ones_like(m.weight)).detach().clone() for name, m in named}
        kept = int(sum(int(v.sum()) for v in masks.values()))
        values = {"density": kept / n_prunable, "test_error": float(test_error),
                  "n_test": int(n_test), "params_prunable": n_prunable,
                  "params_nonzero": n_total - n_prunable + kept}
        store.save_checkpoint(recorder.run_id, {"round": round_, "values": values,
                                                "rewind": rewind, "masks": masks,
                                                "trained": _plain_state(model, masked=True)})
        recorder.log(round_, **values)
    recorder.finish()
    store.drop_checkpoint(recorder.run_id)


def _effective(module):
    """A layer's weight as the forward pass uses it (``weight_orig * weight_mask`` once pruned:
    the attribute ``weight`` is only refreshed by the next forward pass)."""
    if hasattr(module, "weight_orig"):
        return module.weight_orig * module.weight_mask
    return module.weight


def _plain_state(model, masked: bool = False) -> dict:
    """The model's parameters and buffers under their unpruned names (``x.weight``, not
    ``x.weight_orig``; masks left out), cloned; ``masked``: pruned weights as zeros."""
    out = {}
    modules = dict(model.named_modules())
    for name, value in list(model.named_parameters()) + list(model.named_buffers()):
        if name.endswith("_mask"):
            continue
        if name.endswith("_orig"):
            name = name[: -len("_orig")]
            if masked:
                owner, _, attr = name.rpartition(".")
                value = value * getattr(modules[owner], attr + "_mask")
        out[name] = value.detach().clone()
    return out


def _rewind(model, saved: dict) -> None:
    """Reset every parameter and buffer to ``saved`` (W_k); masks stay as they are."""
    import torch

    with torch.no_grad():
        for name, value in list(model.named_parameters()) + list(model.named_buffers()):
            if name.endswith("_mask"):
                continue
            value.copy_(saved[name[: -len("_orig")] if name.endswith("_orig") else name])
