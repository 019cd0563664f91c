"""Verdicts by pre-registered rules: a criterion "<measure> <op> <threshold>" over a measure's
per-seed values, decided by the measure's 95% interval.

    met        the interval lies wholly on the claimed side of the threshold
    failed     the interval lies wholly on the other side (touching the threshold counts as there)
    undecided  otherwise, or fewer than two seeds (no interval)

A finding is "reproduced" when every criterion is met, "not reproduced" when any fails, and
"inconclusive" otherwise. The interval is Student's t over seeds: mean ± t(0.975, n−1)·s/√n.
"""

import math
import operator
import re

import numpy as np
from scipy import stats

OPS = {">": operator.gt, "<": operator.lt}
_CRITERION = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*([<>])\s*([-+]?\d*\.?\d+(?:[eE][-+]?\d+)?)\s*$")
REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE = "reproduced", "not reproduced", "inconclusive"


def parse_criterion(text: str) -> tuple[str, str, float]:
    """"size_slope > 0" -> ("size_slope", ">", 0.0); anything else is a ValueError naming it."""
    match = _CRITERION.match(text)
    if not match:
        raise ValueError(f"verdict criterion {text!r}: write '<measure> > <number>' or '<measure> < <number>'")
    name, op, threshold = match.groups()
    return name, op, float(threshold)


def t_interval(values) -> dict:
    """{"mean", "lo", "hi", "n", "values"}: the mean and a Student-t 95% interval over the values
    (lo = hi = nan with fewer than two)."""
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], np.float64)
    n = len(v)
    mean = float(v.mean()) if n else float("nan")
    if n < 2:
        return {"mean": mean, "lo": float("nan"), "hi": float("nan"), "n": n, "values": v.tolist()}
    half = float(stats.t.ppf(0.975, n - 1) * v.std(ddof=1) / math.sqrt(n))
    return {"mean": mean, "lo": mean - half, "hi": mean + half, "n": n, "values": v.tolist()}


def decide(interval: dict, op: str, threshold: float) -> str:
    """"met", "failed" or "undecided" for `measure op threshold` given the measure's interval."""
    lo, hi = interval["lo"], interval["hi"]
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return "undecided"
    if op == ">":
        return "met" if lo > threshold else "failed" if hi <= threshold else "undecided"
    return "met" if hi < threshold else "failed" if lo >= threshold else "undecided"


def verdict(criteria: list[str], per_seed: dict) -> dict:
    """-> {"verdict", "criteria": [{"rule", "measure", "estimate" (t_interval), "outcome"}]} for a
    finding whose measures' per-seed values are `per_seed` ({measure: [value per seed]}). A
    criterion naming a measure that was not measured is undecided and says so."""
    rows = []
    for text in criteria:
        name, op, threshold = parse_criterion(text)
        estimate = t_interval(per_seed.get(name, []))
        outcome = decide(estimate, op, threshold)
        rows.append({"rule": text, "measure": name, "estimate": estimate, "outcome": outcome,
                     **({} if name in per_seed else {"note": "not measured"})})
    outcomes = [r["outcome"] for r in rows]
    overall = (NOT_REPRODUCED if "failed" in outcomes else
               REPRODUCED if outcomes and all(o == "met" for o in outcomes) else INCONCLUSIVE)
    return {"verdict": overall, "criteria": rows}
