"""A sweep's runs: the product of `--sweep key=v1,v2` axes, each run named, resolved and checked.

`model=<preset>` picks the config file's preset (its `:arg`), so the fields that depend on it
(heads, learning rate, mesh, batch) are derived again. Any other key overrides one field of the
resolved config; a key the config lacks fails before anything runs, naming the closest field.
`get_sweep(arg)` in a config file declares the same list of override dicts in the file.
"""

import dataclasses
import difflib
import importlib.util
import itertools
import json
import re
from pathlib import Path

import ml_collections

PRESET_KEY = "model"


class SweepError(ValueError):
    """A sweep that cannot be expanded: unknown field, bad value, duplicate axis."""


@dataclasses.dataclass(frozen=True)
class RunSpec:
    name: str
    config_file: str         # as given, e.g. "configs/pm.py"
    preset: str              # the :arg
    overrides: tuple         # ((dotted field, value), ...) in axis order, values typed
    config: dict             # the resolved config (JSON-able)

    @property
    def config_arg(self) -> str:
        return f"{self.config_file}:{self.preset}" if self.preset else self.config_file

    def flags(self) -> list:
        """`hh.main` arguments for this run, except --workdir and the distributed flags."""
        return ["--config", self.config_arg] + [f"--config.{k}={_flag_value(v)}" for k, v in self.overrides]


def load_config_module(config_file: str):
    path = Path(config_file)
    if not path.is_file():
        raise SweepError(f"--config {config_file}: no such file")
    spec = importlib.util.spec_from_file_location(f"_sweep_config_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise SweepError(f"{config_file} defines no get_config()")
    return module


def parse_axis(text: str) -> tuple:
    """"data.train_pairs=1000,10000" -> ("data.train_pairs", ["1000", "10000"])."""
    key, sep, values = text.partition("=")
    key = key.strip()
    if not sep or not key or not values.strip():
        raise SweepError(f"--sweep {text!r}: expected KEY=V1,V2,...")
    return key, [v.strip() for v in values.split(",")]


def _flag_value(value) -> str:
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(json.dumps(v) if isinstance(v, str) else str(v) for v in value) + "]"
    return str(value)


def _fields(config, prefix="") -> list:
    out = []
    for key, value in config.items():
        name = f"{prefix}{key}"
        out.append(name)
        if isinstance(value, ml_collections.ConfigDict):
            out.extend(_fields(value, name + "."))
    return out


def _coerce(config, key: str, raw, config_file: str):
    """The override value typed as the field it replaces; SweepError naming the field if not."""
    parent, _, leaf = key.rpartition(".")
    node = config
    try:
        for part in filter(None, parent.split(".")):
            node = node[part]
        current = node[leaf]
    except (KeyError, AttributeError, TypeError):
        close = difflib.get_close_matches(key, _fields(config), n=1, cutoff=0.5)
        hint = f"; did you mean {close[0]}?" if close else ""
        raise SweepError(f"--sweep {key}: {config_file} has no field {key}{hint}") from None
    if not isinstance(raw, str):
        return raw
    try:
        if isinstance(current, bool):
            if raw.lower() not in ("true", "false", "1", "0"):
                raise ValueError(raw)
            return raw.lower() in ("true", "1")
        if isinstance(current, int):
            return int(raw)
        if isinstance(current, float):
            return float(raw)
        if isinstance(current, (list, tuple)):
            return [s for s in raw.split(";") if s]   # lists: items separated by ';'
    except ValueError:
        raise SweepError(f"--sweep {key}={raw}: {key} is a {type(current).__name__} in "
                         f"{config_file}") from None
    return raw


def _set(config, key, value):
    node = config
    *parents, leaf = key.split(".")
    for part in parents:
        node = node[part]
    node[leaf] = value


def _short(key: str) -> str:
    return key.rsplit(".", 1)[-1]


def run_name(overrides) -> str:
    """(("model", "13M"), ("data.train_pairs", 1000)) -> "model-13M_train_pairs-1000"."""
    parts = [f"{_short(k)}-{v}" for k, v in overrides]
    name = "_".join(parts) or "run"
    return re.sub(r"[^A-Za-z0-9._+-]+", "-", name)


def expand(config_file: str, axes: list, default_preset: str = "", use_file_sweep: bool = False,
           fixed: tuple = (), per_preset=lambda preset: ()) -> list:
    """-> [RunSpec] for the product of `axes` [(key, [values])] (plus the file's get_sweep()).

    fixed: overrides applied to every run (--set), not part of the run names.
    per_preset(preset) -> overrides applied first (e.g. the TPU slice's mesh), which `fixed`
    and the axes may override.
    """
    module = load_config_module(config_file)
    keys = [k for k, _ in axes]
    if len(set(keys)) != len(keys):
        raise SweepError(f"--sweep: an axis is given twice: {keys}")
    combos = [tuple(zip(keys, values)) for values in itertools.product(*(v for _, v in axes))]
    if use_file_sweep:
        if not hasattr(module, "get_sweep"):
            raise SweepError(f"--file_sweep: {config_file} defines no get_sweep()")
        file_combos = [tuple(d.items()) for d in module.get_sweep(default_preset or None)]
        combos = [a + b for a in combos for b in file_combos]
    runs, names = [], set()
    for combo in combos:
        preset = next((str(v) for k, v in combo if k == PRESET_KEY), default_preset)
        field_overrides = tuple((k, v) for k, v in combo if k != PRESET_KEY)
        base = module.get_config(preset) if preset else module.get_config()
        given = {k for k, _ in (*fixed, *field_overrides)}
        defaults = tuple((k, v) for k, v in per_preset(preset) if k not in given)
        typed = tuple((k, _coerce(base, k, v, config_file))
                      for k, v in (*defaults, *fixed, *field_overrides))
        for key, value in typed:
            _set(base, key, value)
        name = run_name(combo)
        if name in names:
            raise SweepError(f"two runs would both be named {name!r}: make the axes' values distinct")
        names.add(name)
        runs.append(RunSpec(name=name, config_file=config_file, preset=preset, overrides=typed,
                            config=json.loads(base.to_json_best_effort())))
    return runs
