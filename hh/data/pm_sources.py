"""Which comparisons a run reads: source specs, the helpful↔harmless mixture a PMP/PM run trains
on at a fixed total (Bai et al. 2022 §5.1) with per-tranche loss weights, and its eval sources.

A spec is a `hh.data.sources.comparison_source` name, optionally with a split and a row range:
"synthetic-pmp", "hh_rlhf/harmless-base:test", "hh_rlhf/harmless-base:test[0:2000]",
"tfds:hh_rlhf/harmless-base:1.0.0:test[0:2000]", "array_record:pmp/train[0:100000]",
"files:mine/*.jsonl" (a files: or array_record: source is one split: the split part is ignored). RL prompt
sources (PPO, best-of-n, prompt generation, robustness, online evaluation) use the same specs.
"""

import re

from hh.config import ConfigError
from hh.data import sources
from hh.data.pm_data import as_text

# name: a built-in name, files:GLOB / array_record:GLOB, or tfds:NAME[/CONFIG][:VERSION]
_SPEC = re.compile(r"^(?P<name>(?:files:|array_record:)[^:\[\]]+|tfds:[^:\[\]]+(?::\d+\.\d+\.\d+)?|[^:\[\]]+)"
                   r"(?::(?P<split>\w+))?(?:\[(?P<start>\d*):(?P<stop>\d*)\])?$")


class Rows:
    """Rows [start, stop) of a random-access source, each example tagged with a loss weight."""

    def __init__(self, source, start=0, stop=None, weight=1.0):
        stop = len(source) if stop is None else stop
        if not 0 <= start <= stop <= len(source):
            raise ValueError(f"rows [{start}:{stop}] outside a source of {len(source)}")
        self.source, self.start, self.stop, self.weight = source, start, stop, weight

    def __len__(self):
        return self.stop - self.start

    def __getitem__(self, index):
        if not 0 <= index < len(self):
            raise IndexError(index)
        return {**dict(self.source[self.start + int(index)]), "weight": self.weight}


def parse_spec(spec: str, default_split: str):
    """-> (name, split, start, stop or None)."""
    match = _SPEC.match(spec)
    if not match:
        raise ConfigError(f"comparison source spec {spec!r}: use name[:split][[start:stop]]")
    start, stop = match["start"], match["stop"]
    return (match["name"], match["split"] or default_split, int(start) if start else 0,
            int(stop) if stop else None)


def spec_source(spec: str, default_split: str, data_cfg, weight=1.0,
                fields=sources.PROMPT_FIELDS) -> Rows:
    """The rows a spec names; `fields`: what each row of a FILE.jsonl must hold (PAIR_FIELDS for a
    PM, the default PROMPT_FIELDS for RL prompts)."""
    name, split, start, stop = parse_spec(spec, default_split)
    source = sources.comparison_source(name, split, data_cfg, fields)
    try:
        return Rows(source, start, stop, weight)
    except ValueError as e:
        raise ConfigError(f"source {spec!r}: {e}") from None


def _take(group, n, field, data_cfg, weight):
    """The first n pairs of a group of specs, in order (deterministic, so runs are comparable)."""
    parts, left = [], n
    for spec in group:
        if left == 0:
            break
        rows = spec_source(spec, "train", data_cfg, weight, sources.PAIR_FIELDS)
        take = min(left, len(rows))
        parts.append(Rows(rows, 0, take, weight))
        left -= take
    if left:
        raise ConfigError(f"config.data.{field} has {n - left} pairs, fewer than the {n} that "
                          f"config.data.train_pairs × helpful_fraction asks for")
    return parts


def train_source(data_cfg, train_cfg):
    """The mixture: round(f·N) helpful and N − that harmless pairs, f = data.helpful_fraction,
    N = data.train_pairs; harmless pairs weigh train.harmless_weight in the preference loss."""
    f, total = data_cfg.helpful_fraction, data_cfg.train_pairs
    if not 0.0 <= f <= 1.0:
        raise ConfigError(f"config.data.helpful_fraction={f} must be in [0, 1]")
    if total <= 0:
        raise ConfigError(f"config.data.train_pairs={total} must be positive")
    n_helpful = int(round(f * total))
    parts = (_take(data_cfg.helpful_sources, n_helpful, "helpful_sources", data_cfg, 1.0)
             + _take(data_cfg.harmless_sources, total - n_helpful, "harmless_sources", data_cfg,
                     float(train_cfg.harmless_weight)))
    return sources.ConcatSource(parts)


def eval_source(data_cfg):
    """Every eval spec concatenated (default split "test")."""
    if not data_cfg.eval_sources:
        raise ConfigError("config.data.eval_sources is empty")
    return sources.ConcatSource(spec_source(s, "test", data_cfg, fields=sources.PAIR_FIELDS)
                                for s in data_cfg.eval_sources)


def texts(source, limit=20000):
    """Transcripts for training a tokenizer when a run starts without one."""
    out = []
    for i in range(min(len(source), limit)):
        ex = source[i]
        out.append(as_text(ex["prompt"]) + as_text(ex["chosen"]))
    return out
