"""Import the output tree of facebookresearch/open_lth's ``lottery`` command as an error grid.

open_lth writes no results table; it leaves one directory per lottery::

    ROOT/lottery_<hash>/replicate_<R>/level_<L>/main/
        hparams.log            (level_0 only) the lottery's hyperparameters
        logger                 ``name,iteration,value`` lines, written when the level finishes
        sparsity_report.json   ``{"total": T, "unpruned": U}``, written when the mask is made
        mask.pth               optional

One grid row per finished level (``round`` = L, ``seed`` = R):

- ``test_error`` = 1 - ``test_accuracy`` at the logger's largest iteration (the first line, at
  the rewind step, is the freshly pruned network before retraining); ``n_test`` =
  ``test_examples`` there.
- ``density`` = U / T. T counts every weight in open_lth's mask: all Linear/Conv weights,
  *including* the output layer's, which ``pruning_layers_to_ignore`` keeps dense (no biases).
  open_lth's ``sparse_global`` prunes 20 % of all U each level, so U / T is 0.8^L; the fraction
  of the hidden layers' weights left is lower. ``params_prunable`` = T,
  ``params_nonzero`` = ``params_total`` - T + U.
- ``n_train`` = ceil(``subsample_fraction`` x the data set's training examples), as open_lth's
  ``Dataset.subsample`` takes it; the full set without a fraction.
- Models: ``mnist_lenet_N1_..._Nk`` -> ``mlp``, depth k, width N (``--nonuniform`` says what an
  MLP of unequal widths becomes); ``cifar_resnet_D[_W]`` -> ``resnet``, depth D, width W
  (default 16); any other model is an arch of its own (depth 1, width 1), its ``params_total``
  the report's T (weights only: its biases are not known).

Unfinished levels (no logger, or a logger that stops before the end of training) and branches
other than ``main`` are skipped with one line each saying why; a tree that cannot be read (a
level missing its logger while a later level finished, a malformed file) is a
:class:`~bayes_prune.errors.UserError` naming the file. No torch: ``mask.pth`` is only read
when a level has no ``sparsity_report.json``, and then with torch imported lazily.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .errors import UserError
from .grid import validate

__all__ = ["DATASETS", "import_tree", "parse_hparams", "parse_logger", "map_model"]

NONUNIFORM = ("skip", "first", "max")


@dataclass(frozen=True)
class Dataset:
    """What open_lth's data set of that name holds: training examples, classes, input."""

    n_train: int
    n_classes: int
    n_inputs: int  # flattened input size (what a LeNet's first layer sees)


DATASETS = {
    "mnist": Dataset(60_000, 10, 784),
    "cifar10": Dataset(50_000, 10, 3 * 32 * 32),
    "imagenet": Dataset(1_281_167, 1000, 3 * 224 * 224),
}


def parse_hparams(path: Path) -> dict[str, dict[str, str]]:
    """``{section: {key: value}}`` of an open_lth ``hparams.log`` (values as written)."""
    sections: dict[str, dict[str, str]] = {}
    current = None
    for i, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        item = re.match(r"^\s+\*\s+(\w+)\s+=>\s*(.*)$", line)
        if item and current is not None:
            current[item.group(1)] = item.group(2).strip()
        elif line.strip().endswith("Hyperparameters") and not line.startswith(" "):
            current = sections.setdefault(line.strip(), {})
        else:
            raise UserError(f"{path}: line {i}: {line.strip()!r} is neither a section header "
                            "('... Hyperparameters') nor a '    * key => value' line")
    for needed in ("Dataset Hyperparameters", "Model Hyperparameters",
                   "Training Hyperparameters"):
        if needed not in sections:
            raise UserError(f"{path}: no '{needed}' section; open_lth writes "
                            "Dataset, Model, ..., Training Hyperparameters")
    return sections


def parse_logger(path: Path) -> dict[str, dict[int, float]]:
    """``{name: {iteration: value}}`` of an open_lth ``logger`` (lines ``name,iteration,value``)."""
    out: dict[str, dict[int, float]] = {}
    for i, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split(",")
        try:
            name, it, value = parts[0], int(parts[1]), float(parts[2])
            if len(parts) != 3 or not math.isfinite(value):
                raise ValueError
        except (ValueError, IndexError):
            raise UserError(f"{path}: line {i}: {line.strip()!r} is not 'name,iteration,value' "
                            "with an integer iteration and a finite value") from None
        out.setdefault(name, {})[it] = value
    return out


def _steps(text: str, per_epoch: int, where: str) -> int:
    """Iterations of an open_lth step string: ``Nep``, ``Nit`` or ``NepMit``."""
    m = re.fullmatch(r"(?:(\d+)ep)?(?:(\d+)it)?", text.strip())
    if not m or not (m.group(1) or m.group(2)):
        raise UserError(f"{where}: training_steps {text!r} is not open_lth's 'Nep', 'Nit' or "
                        "'NepMit'")
    return int(m.group(1) or 0) * per_epoch + int(m.group(2) or 0)


@dataclass(frozen=True)
class Mapped:
    """An open_lth model as a grid configuration; ``extra`` counts the parameters outside the
    mask (biases, norm layers), ``None`` when not known."""

    arch: str
    depth: int
    width: int
    extra: int | None
    weights: int | None  # weights in the mask, when the model's layout gives them


def map_model(name: str, data: Dataset, nonuniform: str) -> Mapped | str:
    """The grid configuration of open_lth model ``name``, or a reason it is skipped."""
    lenet = re.fullmatch(r"mnist_lenet((?:_\d+)+)", name)
    if lenet:
        widths = [int(w) for w in lenet.group(1).strip("_").split("_")]
        if len(set(widths)) > 1:
            if nonuniform == "skip":
                return (f"model {name} has hidden layers of unequal width {tuple(widths)} "
                        "(--nonuniform first|max maps it to mlp)")
            width = widths[0] if nonuniform == "first" else max(widths)
        else:
            width = widths[0]
        sizes = [data.n_inputs, *widths, data.n_classes]
        weights = sum(a * b for a, b in zip(sizes[:-1], sizes[1:], strict=True))
        return Mapped("mlp", len(widths), width, sum(widths) + data.n_classes, weights)
    resnet = re.fullmatch(r"cifar_resnet_(\d+)(?:_(\d+))?", name)
    if resnet and (int(resnet.group(1)) - 2) % 6 == 0 and int(resnet.group(1)) > 2:
        from .families import param_counts

        depth, width = int(resnet.group(1)), int(resnet.group(2) or 16)
        total, weights = param_counts("resnet", "cifar10", depth, width)
        return Mapped("resnet", depth, width, total - weights, weights)
    return Mapped(name, 1, 1, None, None)


def _report(main: Path) -> tuple[float, float]:
    """(T, U) of a level: its sparsity report, else its mask (torch, lazily)."""
    report = main / "sparsity_report.json"
    if report.is_file():
        try:
            d = json.loads(report.read_text())
            total, kept = float(d["total"]), float(d["unpruned"])
        except (ValueError, KeyError, TypeError):
            raise UserError(f"{report}: not {{\"total\": T, \"unpruned\": U}} with numbers") \
                from None
    elif (main / "mask.pth").is_file():
        import torch

        mask = torch.load(main / "mask.pth", map_location="cpu", weights_only=True)
        total = float(sum(m.numel() for m in mask.values()))
        kept = float(sum(m.sum() for m in mask.values()))
    else:
        raise UserError(f"{report}: missing (and no mask.pth); a finished level has one")
    if not 0 < kept <= total:
        raise UserError(f"{report}: unpruned {kept:g} of total {total:g}; expected "
                        "0 < unpruned <= total")
    return total, kept


def _level_number(path: Path) -> int | None:
    m = re.fullmatch(r"level_(\d+)", path.name)
    return int(m.group(1)) if m else None


def _lotteries(root: Path) -> list[Path]:
    if not root.is_dir():
        raise UserError(f"{root}: no such directory")
    if root.name.startswith("lottery_"):
        return [root]
    found = sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith("lottery_"))
    if not found:
        raise UserError(f"{root}: no lottery_<hash>/ directories; give open_lth's output "
                        "directory (its --root/open_lth_data) or one lottery_<hash>/")
    return found


def _replicate(rep: Path, tasks: dict[str, str], nonuniform: str,
               say: Callable[[str], None]) -> list[dict]:
    """The rows of one replicate's finished levels."""
    seed = int(rep.name.split("_")[1])
    levels = sorted((n, p) for p in rep.iterdir() if p.is_dir()
                    and (n := _level_number(p)) is not None)
    for p in sorted(rep.iterdir()):
        if p.is_dir() and _level_number(p) is None and p.name != "level_pretrain":
            say(f"{p}: skipped: not a level_<L> directory")
    for _, p in levels:
        for branch in sorted(b for b in p.iterdir() if b.is_dir() and b.name != "main"):
            say(f"{branch}: skipped: branch '{branch.name}'; only the main lottery is imported")
    finished = [n for n, p in levels if (p / "main" / "logger").is_file()]
    if not finished:
        say(f"{rep}: skipped: no finished level (no level_<L>/main/logger)")
        return []
    for n, p in levels:
        if n < finished[-1] and n not in finished:
            raise UserError(f"{p / 'main' / 'logger'}: missing, but level_{finished[-1]} "
                            "finished; every level before a finished one has its logger (an "
                            "incomplete copy of the tree?)")
    hp_path = rep / "level_0" / "main" / "hparams.log"
    if not hp_path.is_file():
        raise UserError(f"{hp_path}: missing; open_lth writes it when level 0 starts")
    hp = parse_hparams(hp_path)
    data_hp, train_hp = hp["Dataset Hyperparameters"], hp["Training Hyperparameters"]
    dataset = data_hp.get("dataset_name")
    if dataset not in DATASETS:
        say(f"{rep}: skipped: data set {dataset!r} is not one of open_lth's "
            f"{', '.join(DATASETS)}")
        return []
    data = DATASETS[dataset]
    model = hp["Model Hyperparameters"].get("model_name", "")
    mapped = map_model(model, data, nonuniform)
    if isinstance(mapped, str):
        say(f"{rep}: skipped: {mapped}")
        return []
    try:
        fraction = float(data_hp.get("subsample_fraction", 1.0))
        batch = int(data_hp["batch_size"])
    except (KeyError, ValueError):
        raise UserError(f"{hp_path}: Dataset Hyperparameters need a numeric batch_size and "
                        "subsample_fraction") from None
    n_train = math.ceil(data.n_train * fraction)
    end = _steps(train_hp.get("training_steps", ""), math.ceil(n_train / batch), str(hp_path))
    task = tasks.get(dataset, dataset)
    rows = []
    for n, p in levels:
        main = p / "main"
        if n not in finished:
            say(f"{main}: skipped: unfinished level (no logger)")
            continue
        log = parse_logger(main / "logger")
        acc = log.get("test_accuracy", {})
        if not acc:
            raise UserError(f"{main / 'logger'}: no test_accuracy line")
        last = max(acc)
        if last != end:
            say(f"{main}: skipped: the logger ends at iteration {last}, training ends at "
                f"{end} ({train_hp.get('training_steps')} of {math.ceil(n_train / batch)} "
                "iterations an epoch)")
            continue
        if not 0 <= acc[last] <= 1:
            raise UserError(f"{main / 'logger'}: test_accuracy {acc[last]!r} at iteration "
                            f"{last} is not a fraction in [0, 1]")
        n_test = log.get("test_examples", {}).get(last)
        if n_test is None or n_test <= 0 or n_test != round(n_test):
            raise UserError(f"{main / 'logger'}: test_examples at iteration {last} is "
                            f"{n_test!r}; expected a positive count")
        total, kept = _report(main)
        if mapped.weights is not None and round(total) != mapped.weights:
            raise UserError(f"{main / 'sparsity_report.json'}: total {total:g} is not the "
                            f"{mapped.weights} weights of {model} on {dataset}")
        extra = mapped.extra if mapped.extra is not None else 0
        rows.append({
            "task": task, "arch": mapped.arch, "depth": mapped.depth, "width": mapped.width,
            "n_train": n_train, "seed": seed, "round": n, "density": kept / total,
            "test_error": 1.0 - acc[last], "n_test": int(n_test),
            "params_total": int(round(total)) + extra,
            "params_nonzero": int(round(kept)) + extra,
            "run_id": f"{rep.parent.name}/{rep.name}",
            "params_prunable": int(round(total)),
            "random_error": 1.0 - 1.0 / data.n_classes, "source": f"open_lth:{model}",
        })
    return rows


def import_tree(root: str | Path, tasks: dict[str, str] | None = None,
                nonuniform: str = "skip",
                say: Callable[[str], None] = print) -> pd.DataFrame:
    """Every finished level under ``root`` as a validated error grid (rows: levels).

    ``tasks`` renames open_lth data sets (``{"mnist": "fashion-mnist"}``); ``nonuniform`` is
    ``skip``, ``first`` or ``max`` (the width of an MLP whose hidden layers differ); ``say``
    receives one line per skipped level, replicate or branch.
    """
    if nonuniform not in NONUNIFORM:
        raise UserError(f"--nonuniform {nonuniform!r}; allowed: {', '.join(NONUNIFORM)}")
    root = Path(root)
    rows: list[dict] = []
    for lottery in _lotteries(root):
        reps = sorted(p for p in lottery.iterdir() if p.is_dir()
                      and re.fullmatch(r"replicate_\d+", p.name))
        if not reps:
            say(f"{lottery}: skipped: no replicate_<R>/ directory")
        for rep in reps:
            rows += _replicate(rep, tasks or {}, nonuniform, say)
    if not rows:
        raise UserError(f"{root}: no finished level to import")
    return validate(pd.DataFrame(rows), source=str(root))
