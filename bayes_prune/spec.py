"""Grid specs: a TOML file that names a (task, arch) group, its grid and its training recipe.

Example (``experiments/mnist1d_mlp.toml``)::

    task = "mnist1d"
    arch = "mlp"
    depths = [1, 2, 3]
    widths = [16, 32, 64, 128]
    n_trains = [1000, 2000, 4000]
    seeds = [0, 1, 2]
    rounds = 40                 # at most; a run stops earlier once near random guessing

    [recipe]
    optimizer = "adam"
    lr = 0.002
    steps = 2000

Instead of the four lists, a spec may name its runs one by one (``bayes-prune suggest -o``
writes such specs): one ``[[runs]]`` table per run, with ``depth``, ``width``, ``n_train`` and
``seed``::

    task = "mnist1d"
    arch = "mlp"
    rounds = 40

    [[runs]]
    depth = 3
    width = 64
    n_train = 4000
    seed = 0

Every run of the grid is a :class:`RunConfig`; its ``run_id`` hashes the run's fields and the
recipe's non-default fields (so adding a field with a default later keeps old ids).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import tomllib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from .errors import UserError
from .families import check as check_arch
from .tasks import TASKS, task_info

__all__ = ["Recipe", "RunConfig", "GridSpec", "load_spec", "spec_text"]


_KINDS = {"int": "an integer", "float": "a finite number", "str": "a string",
          "bool": "true or false"}


def _is(value, kind: str) -> bool:
    """Whether ``value`` (from TOML or JSON) is of the field type named ``kind``; bool is no
    number here, an integer is a float."""
    if kind == "bool" or isinstance(value, bool):
        return kind == "bool" and isinstance(value, bool)
    if kind == "int":
        return isinstance(value, int)
    if kind == "float":
        return isinstance(value, (int, float)) and math.isfinite(value)
    return isinstance(value, str)


def _f(default, help: str):
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class Recipe:
    """How every network of a grid is trained and pruned (IMP with weight rewinding)."""

    optimizer: str = _f("adam", "'adam' or 'sgd' (with momentum, nesterov)")
    lr: float = _f(2e-3, "peak learning rate")
    momentum: float = _f(0.9, "SGD momentum (ignored by adam)")
    weight_decay: float = _f(0.0, "L2 weight decay")
    schedule: str = _f("cosine", "'cosine' (decay to 0 at `steps`), 'constant', or 'step' "
                                 "(x0.1 at 1/2 and at 3/4 of `steps`: epochs 80 and 120 of 160)")
    warmup: int = _f(0, "linear warm-up steps")
    batch_size: int = _f(128, "minibatch size")
    steps: int = _f(2000, "training steps T of every round")
    rewind_step: int = _f(40, "step k whose weights W_k survivors are reset to each round")
    prune_fraction: float = _f(0.2, "fraction of the remaining prunable weights cut per round")
    stop_within: float = _f(0.1, "stop once test error is within this relative distance of "
                                 "random guessing")
    nesterov: bool = _f(True, "SGD with Nesterov momentum (ignored by adam); false: the "
                              "heavy-ball momentum of the pruning papers' CIFAR recipe")
    augment: str = _f("none", "'none' or 'flip_crop' (images only: random 32x32 crop of the "
                              "4-pixel-padded image and a left-right flip, done on the device)")
    precision: str = _f("auto", "'auto' (bf16 autocast on a CUDA GPU that has it, else fp32), "
                                "'fp32' or 'bf16' (autocast on any device)")
    compile: bool = _f(False, "torch.compile the forward and backward pass (pays a compile "
                              "of tens of seconds once per process; pays off on long runs)")

    def __post_init__(self):
        for f in fields(self):  # types first: a rule on a value of the wrong type is no check
            value = getattr(self, f.name)
            if not _is(value, f.type):
                raise UserError(f"recipe.{f.name} = {value!r} must be {_KINDS[f.type]}")
        rules = [
            ("optimizer", self.optimizer in ("adam", "sgd"), "'adam' or 'sgd'"),
            ("schedule", self.schedule in ("cosine", "constant", "step"),
             "'cosine', 'constant' or 'step'"),
            ("lr", self.lr > 0, "a positive number"),
            ("batch_size", self.batch_size > 0, "a positive integer"),
            ("steps", self.steps > 0, "a positive integer"),
            ("rewind_step", 0 <= self.rewind_step < self.steps, "in [0, steps)"),
            ("prune_fraction", 0 < self.prune_fraction < 1, "in (0, 1)"),
            ("stop_within", 0 <= self.stop_within < 1, "in [0, 1)"),
            ("warmup", 0 <= self.warmup < self.steps, "in [0, steps)"),
            ("augment", self.augment in ("none", "flip_crop"), "'none' or 'flip_crop'"),
            ("precision", self.precision in ("auto", "fp32", "bf16"),
             "'auto', 'fp32' or 'bf16'"),
        ]
        for name, ok, expected in rules:
            if not ok:
                raise UserError(f"recipe.{name} = {getattr(self, name)!r} must be {expected}")


@dataclass(frozen=True)
class RunConfig:
    """One IMP run: a network of the grid with its seed and recipe."""

    task: str
    arch: str
    depth: int
    width: int
    n_train: int
    seed: int
    rounds: int
    recipe: Recipe

    @property
    def run_id(self) -> str:
        default = Recipe()
        recipe = {f.name: getattr(self.recipe, f.name) for f in fields(Recipe)
                  if getattr(self.recipe, f.name) != getattr(default, f.name)}
        key = {**{k: v for k, v in asdict(self).items() if k != "recipe"}, "recipe": recipe}
        return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> RunConfig:
        d = json.loads(text)
        return cls(**{**d, "recipe": Recipe(**d["recipe"])})


_LISTS = ("depths", "widths", "n_trains", "seeds")
_RUN_KEYS = ("depth", "width", "n_train", "seed")  # a [[runs]] entry's fields


@dataclass(frozen=True)
class GridSpec:
    """A (task, arch) group's grid: depths x widths x n_trains x seeds, one recipe; or, when
    ``listed`` is given, exactly those (depth, width, n_train, seed) runs."""

    task: str
    arch: str
    depths: tuple[int, ...]
    widths: tuple[int, ...]
    n_trains: tuple[int, ...]
    seeds: tuple[int, ...]
    rounds: int = 40
    recipe: Recipe = Recipe()
    name: str = "grid"
    listed: tuple[tuple[int, int, int, int], ...] | None = None

    def runs(self) -> list[RunConfig]:
        """Every run of the grid, smallest networks first (a listed spec: in its order)."""
        combos = self.listed if self.listed is not None else itertools.product(
            self.depths, self.widths, self.n_trains, self.seeds)
        return [RunConfig(self.task, self.arch, d, w, n, s, self.rounds, self.recipe)
                for d, w, n, s in combos]


def spec_text(task: str, arch: str, runs, rounds: int = 40, recipe: Recipe = Recipe(),
              comment: str = "") -> str:
    """A spec (TOML) that lists ``runs`` ((depth, width, n_train, seed) tuples) one by one, with
    the recipe's non-default fields; :func:`load_spec` reads it back."""
    def value(v):
        return ("true" if v else "false") if isinstance(v, bool) else \
            json.dumps(v) if isinstance(v, str) else repr(v)

    lines = [f"# {line}" for line in comment.splitlines()]
    lines += [f"task = {value(task)}", f"arch = {value(arch)}", f"rounds = {int(rounds)}"]
    default = Recipe()
    changed = [f for f in fields(Recipe) if getattr(recipe, f.name) != getattr(default, f.name)]
    if changed:
        lines += ["", "[recipe]"] + [f"{f.name} = {value(getattr(recipe, f.name))}"
                                     for f in changed]
    for run in runs:
        lines += ["", "[[runs]]"] + [f"{k} = {int(v)}" for k, v in zip(_RUN_KEYS, run,
                                                                      strict=True)]
    return "\n".join(lines) + "\n"


def load_spec(path: str | Path) -> GridSpec:
    """Read and check a spec; every problem is a :class:`UserError` naming the field."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path}: is a directory, not a spec file (TOML)")
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{path}: no such spec file") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: not a TOML file ({exc})") from None
    allowed = {"task", "arch", "rounds", "recipe", "runs", *_LISTS}
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise UserError(f"{path}: unknown field(s) {', '.join(unknown)}; allowed: "
                        f"{', '.join(sorted(allowed))}")
    listed = _listed(path, raw)
    for name in ("task", "arch", *(_LISTS if listed is None else ())):
        if name not in raw:
            raise UserError(f"{path}: missing field '{name}'")
    for name in ("task", "arch"):
        if not isinstance(raw[name], str):
            raise UserError(f"{path}: field '{name}' must be a string, got {raw[name]!r}")
    if raw["task"] not in TASKS:
        raise UserError(f"{path}: field 'task': unknown task {raw['task']!r}; known tasks: "
                        f"{', '.join(TASKS)}")
    lists = {}
    if listed is not None:
        lists = {name: tuple(sorted({r[i] for r in listed}))
                 for i, name in enumerate(_LISTS)}
    for name in _LISTS if listed is None else ():
        values = raw[name]
        if not isinstance(values, list) or not values or not all(
                isinstance(v, int) and not isinstance(v, bool) for v in values):
            raise UserError(f"{path}: field '{name}' must be a non-empty list of integers, "
                            f"got {values!r}")
        if name != "seeds" and min(values) <= 0:
            raise UserError(f"{path}: field '{name}' must hold positive integers, "
                            f"got {min(values)}")
        if name == "seeds" and min(values) < 0:
            raise UserError(f"{path}: field 'seeds' must hold integers >= 0, got {min(values)}")
        if max(values) >= 2**31:
            raise UserError(f"{path}: field '{name}' must hold integers below 2^31, "
                            f"got {max(values)}")
        lists[name] = tuple(values)
    rounds = raw.get("rounds", 40)
    if not isinstance(rounds, int) or isinstance(rounds, bool) or rounds < 1:
        raise UserError(f"{path}: field 'rounds' must be an integer >= 1, got {rounds!r}")
    recipe_raw = raw.get("recipe", {})
    if not isinstance(recipe_raw, dict):
        raise UserError(f"{path}: 'recipe' must be a table ([recipe]), got {recipe_raw!r}")
    names = {f.name for f in fields(Recipe)}
    bad = sorted(set(recipe_raw) - names)
    if bad:
        raise UserError(f"{path}: unknown recipe field(s) {', '.join(bad)}; allowed: "
                        f"{', '.join(sorted(names))}")
    try:
        recipe = Recipe(**recipe_raw)
        pairs = {r[:2] for r in listed} if listed is not None else \
            itertools.product(lists["depths"], lists["widths"])
        for depth, width in pairs:
            check_arch(raw["arch"], depth, width)
    except UserError as exc:
        raise UserError(f"{path}: {exc}") from None
    if recipe.augment != "none" and len(task_info(raw["task"]).input_shape) != 3:
        raise UserError(f"{path}: recipe.augment = {recipe.augment!r} needs images; task "
                        f"{raw['task']!r} has inputs of shape "
                        f"{task_info(raw['task']).input_shape}")
    pool = task_info(raw["task"]).train_pool
    if max(lists["n_trains"]) > pool:
        raise UserError(f"{path}: field 'n_trains': {max(lists['n_trains'])} exceeds the "
                        f"{pool} training examples of {raw['task']}")
    return GridSpec(raw["task"], raw["arch"], lists["depths"], lists["widths"],
                    lists["n_trains"], lists["seeds"], rounds, recipe, name=path.stem,
                    listed=listed)


def _listed(path: Path, raw: dict) -> tuple[tuple[int, int, int, int], ...] | None:
    """The ``[[runs]]`` of a spec that lists its runs (``None`` if it has none); a spec has
    either ``[[runs]]`` or the four lists, never both."""
    if "runs" not in raw:
        return None
    both = [n for n in _LISTS if n in raw]
    if both:
        raise UserError(f"{path}: a spec with [[runs]] names its runs one by one; remove "
                        f"{', '.join(both)} (or the [[runs]])")
    runs = raw["runs"]
    if not isinstance(runs, list) or not runs or not all(isinstance(r, dict) for r in runs):
        raise UserError(f"{path}: 'runs' must be one or more [[runs]] tables")
    out = []
    for i, r in enumerate(runs, 1):
        bad = sorted(set(r) - set(_RUN_KEYS))
        missing = [k for k in _RUN_KEYS if k not in r]
        if bad or missing:
            raise UserError(f"{path}: [[runs]] entry {i}: fields must be exactly "
                            f"{', '.join(_RUN_KEYS)}" + (f"; unknown {', '.join(bad)}" if bad
                                                         else f"; missing {', '.join(missing)}"))
        for k in _RUN_KEYS:
            v = r[k]
            low = 0 if k == "seed" else 1
            if not isinstance(v, int) or isinstance(v, bool) or not low <= v < 2**31:
                raise UserError(f"{path}: [[runs]] entry {i}: {k} must be an integer in "
                                f"[{low}, 2^31), got {v!r}")
        out.append(tuple(int(r[k]) for k in _RUN_KEYS))
    if len(set(out)) < len(out):
        raise UserError(f"{path}: [[runs]] names the same run twice")
    return tuple(out)
