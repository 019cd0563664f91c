"""Simulated labelers: stand-ins for crowdworkers in offline studies of the online loop (Bai et al.
2022 §2.2, §4.5). A labeler scores both responses with a gold scorer — a separate, larger PM (Gao et
al. 2022's gold-RM setup) or the synthetic world's rule judge — and picks with Bradley–Terry noise at
a temperature, which sets its agreement with a noiseless labeler (≈63% for researchers vs
crowdworkers, Bai et al. §2.1, Fig 10). Its labels have the comparison store's shape: choice, strength.
"""

import dataclasses

import numpy as np

from hh.data import synthetic
from hh.trained import LoadedPM

MODES = ("helpful", "red-team")
# p_picked (the labeler's own probability of the response it picked) → strength 1..4:
# p < 0.6 → 1, 0.6 ≤ p < 0.75 → 2, 0.75 ≤ p < 0.9 → 3, p ≥ 0.9 → 4. Not from the paper (it does not
# publish how strengths were distributed); chosen so a coin flip (p = 0.5) and a pick against the
# labeler's own odds (p < 0.5) are strength 1, which export drops (§2.2: "weaker than the weakest").
STRENGTH_THRESHOLDS = (0.6, 0.75, 0.9)


def sigmoid(x):
    """σ(x) in float64, without overflow for large |x| (tanh form)."""
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(x, np.float64)))


def choice_probability(score_a, score_b, temperature: float):
    """P(a is picked) = σ((s_a − s_b) / T) (Bradley–Terry, the PM's own model, Bai et al. §4.1).
    T = 0 is the noiseless labeler: 1 or 0, and 0.5 on a tie. Arrays broadcast; float64."""
    if temperature < 0:
        raise ValueError(f"temperature {temperature}: use T >= 0")
    delta = np.asarray(score_a, np.float64) - np.asarray(score_b, np.float64)
    if temperature == 0:
        return np.where(delta > 0, 1.0, np.where(delta < 0, 0.0, 0.5))
    return sigmoid(delta / temperature)


def agreement_rate(margins, temperature: float) -> float:
    """Expected agreement with the noiseless labeler over score margins Δ: mean σ(|Δ| / T) (a tie
    agrees half the time at any T)."""
    return float(np.mean(choice_probability(np.abs(np.asarray(margins, np.float64)), 0.0, temperature)))


def temperature_for_agreement(margins, target: float, tol: float = 1e-12) -> float:
    """The T at which agreement_rate(margins, T) = target, by bisection (agreement falls from its
    T = 0 value to 0.5 as T grows). E.g. target 0.63 for researcher–crowdworker agreement (§2.1)."""
    margins = np.abs(np.asarray(margins, np.float64))
    best = agreement_rate(margins, 0.0)
    if not 0.5 < target <= best:
        raise ValueError(f"agreement {target}: achievable targets lie in (0.5, {best:.6g}] for these "
                         f"margins (0.5 is a coin flip; {best:.6g} the noiseless labeler, ties half)")
    if target == best:
        return 0.0
    lo, hi = 0.0, max(float(margins.max()), 1e-12)
    while agreement_rate(margins, hi) > target:   # agreement → 0.5 as T → ∞: this ends
        lo, hi = hi, 2.0 * hi
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if agreement_rate(margins, mid) > target:
            lo = mid
        else:
            hi = mid
        if hi - lo <= tol * hi:
            break
    return 0.5 * (lo + hi)


def strength_from_probability(p_picked):
    """Strength 1..4 from the labeler's probability of the response it picked (STRENGTH_THRESHOLDS).
    A scalar gives an int, an array an int array."""
    strength = np.searchsorted(STRENGTH_THRESHOLDS, np.asarray(p_picked, np.float64), side="right") + 1
    return int(strength) if strength.ndim == 0 else strength


@dataclasses.dataclass(frozen=True)
class Label:
    """One simulated comparison: the pick (store convention: in red-team mode the MORE HARMFUL),
    its strength, the probability p_a that a was picked, and the gold scores behind it."""
    choice: str      # "a" or "b"
    strength: int    # 1..4
    p_a: float
    score_a: float
    score_b: float


def mode_labeler(mode: str) -> str:
    """The world's labeler that judges a comparison mode: harmlessness for red-team comparisons,
    helpfulness otherwise."""
    return "harmless" if mode == "red-team" else "helpful"


def label_pairs(scores_a, scores_b, mode: str = "helpful", temperature: float = 1.0, rng=None) -> list[Label]:
    """Labels for pairs of gold scores (higher = more helpful and harmless). Helpful mode picks the
    higher-scored response with Bradley–Terry noise; red-team mode picks the MORE HARMFUL, i.e. the
    lower-scored one, as red-teamers did (§2.2). rng: a numpy Generator or a seed."""
    if mode not in MODES:
        raise ValueError(f"mode {mode!r}: use one of {list(MODES)}")
    scores_a, scores_b = np.asarray(scores_a, np.float64), np.asarray(scores_b, np.float64)
    p_a = (choice_probability(scores_a, scores_b, temperature) if mode == "helpful"
           else choice_probability(scores_b, scores_a, temperature))
    pick_a = np.random.default_rng(rng).random(p_a.shape) < p_a   # p_a = 1 always, 0 never
    strength = strength_from_probability(np.where(pick_a, p_a, 1.0 - p_a))
    return [Label("a" if a else "b", int(s), float(p), float(sa), float(sb))
            for a, s, p, sa, sb in zip(pick_a, strength, p_a, scores_a, scores_b)]


class GoldPMLabeler:
    """A labeler whose preferences are a separate (ideally larger) PM's scores plus BT noise."""

    def __init__(self, pm, temperature: float = 1.0, seed: int = 0):
        """pm: an hh.trained.LoadedPM (or its workdir, loaded here)."""
        if not hasattr(pm, "scores"):
            pm = LoadedPM(pm)
        self.pm, self.temperature, self.rng = pm, temperature, np.random.default_rng(seed)

    def scores(self, contexts, responses_a, responses_b) -> tuple[np.ndarray, np.ndarray]:
        """-> (scores of a [pairs], scores of b [pairs]), float64: the PM's reward of each response
        in its context (contexts end with "\\n\\nAssistant:", responses start with a space)."""
        source = [{"prompt": c, "chosen": a, "rejected": b}
                  for c, a, b in zip(contexts, responses_a, responses_b, strict=True)]
        if not source:
            return np.zeros(0), np.zeros(0)
        return self.pm.scores(source)

    def label(self, contexts, responses_a, responses_b, mode: str = "helpful", rng=None) -> list[Label]:
        """rng: a numpy Generator or seed for this call's noise (default: the labeler's own stream;
        the online loop passes one per chunk, so a resumed collection draws the same labels)."""
        return label_pairs(*self.scores(contexts, responses_a, responses_b), mode, self.temperature,
                           self.rng if rng is None else rng)


class RuleLabeler:
    """A labeler that knows the synthetic world: the gold judge's score (hh.data.synthetic.gold_score,
    1 right, 0 wrong, 0.5 half right or not a world request) of the mode's labeler: helpfulness in
    helpful mode, harmlessness in red-team mode. A tie at T = 0 is a coin flip of strength 1."""

    def __init__(self, seed: int = 0, temperature: float = 0.0):
        self.temperature, self.rng = temperature, np.random.default_rng(seed)

    @staticmethod
    def score(context: str, response: str, labeler: str = "helpful") -> float:
        verdict = synthetic.gold_score(context, response, labeler)
        return 0.5 if verdict is None else verdict

    def scores(self, contexts, responses_a, responses_b, labeler: str = "helpful") -> tuple[np.ndarray, np.ndarray]:
        pairs = list(zip(contexts, responses_a, responses_b, strict=True))
        return (np.array([self.score(c, a, labeler) for c, a, _ in pairs], np.float64),
                np.array([self.score(c, b, labeler) for c, _, b in pairs], np.float64))

    def label(self, contexts, responses_a, responses_b, mode: str = "helpful", rng=None) -> list[Label]:
        """rng: a numpy Generator or seed for this call's noise (default: the labeler's own stream;
        the online loop passes one per chunk, so a resumed collection draws the same labels)."""
        labeler = mode_labeler(mode)
        return label_pairs(*self.scores(contexts, responses_a, responses_b, labeler), mode, self.temperature,
                           self.rng if rng is None else rng)
