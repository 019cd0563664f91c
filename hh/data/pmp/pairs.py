"""Ranked PMP pairs and their two comparison forms: ranked (A > B) and binarized (GOOD/BAD).

Every source module builds `RankedPair`s; the PM input pipeline sees only comparison dicts with the
HH keys (prompt, chosen, rejected, num_turns, tranche), so PMP and HH data share one code path.
"""

import collections
import dataclasses
from collections.abc import Iterable, Iterator

# Askell et al. 2021 §4.1: the binary labels are the words GOOD and BAD.
GOOD, BAD = "GOOD", "BAD"
# Segments of a sample ("Question: …", "Answer: …") are separated like HH turns: by a blank line.
SEGMENT_SEPARATOR = "\n\n"


@dataclasses.dataclass(frozen=True)
class RankedPair:
    """Two samples sharing `context`: context + better > context + worse.

    `context` is the shared text up to the final segment, ending with SEGMENT_SEPARATOR (or "");
    `better`/`worse` are the final segments, header included ("Answer: …"). `source` names the
    dataset ("stackexchange", "reddit", "wikipedia"); `metadata` holds ids and scores for audits.
    """
    context: str
    better: str
    worse: str
    source: str
    metadata: dict = dataclasses.field(default_factory=dict, compare=False)


def join_segments(segments: Iterable[str]) -> str:
    """The context text of `segments`, each followed by the separator ("" for none)."""
    return "".join(s + SEGMENT_SEPARATOR for s in segments)


def tranche(source: str) -> str:
    return f"pmp-{source}"


def comparison(prompt: str, chosen: str, rejected: str, source: str) -> dict:
    # PMP samples are single documents, not dialogues: one "turn" each.
    return {"prompt": prompt, "chosen": chosen, "rejected": rejected, "num_turns": 1,
            "tranche": tranche(source)}


def to_comparison(pair: RankedPair) -> dict:
    """The ranked form: prompt = the shared context, chosen/rejected = better/worse segment."""
    return comparison(pair.context, pair.better, pair.worse, pair.source)


def binarize(pairs: Iterable[RankedPair]) -> Iterator[dict]:
    """Askell et al. 2021 §4.1: A > B becomes `GOOD:A > BAD:A` and `BAD:B > GOOD:B` (2x pairs).

    The label goes AFTER the whole sample, as its own final segment: prompt = A + "\\n\\n",
    chosen = "GOOD", rejected = "BAD" (and the reverse for B). Why after, when the paper writes the
    label first: (1) [A] §3.1 formats every binary task as `C:A > C:B`, shared text first and the
    differing label last, and binarized PMP is such a task with C = the sample; (2) the two sides
    then share a prefix and differ only at the end, exactly like HH comparisons, so the PM
    pipeline's left-truncation of long prompts never cuts the label; (3) the score is read on the
    end-of-context token, right after the label. Yields the two pairs of A > B in that order.
    """
    for pair in pairs:
        good_sample = pair.context + pair.better + SEGMENT_SEPARATOR
        bad_sample = pair.context + pair.worse + SEGMENT_SEPARATOR
        yield comparison(good_sample, GOOD, BAD, pair.source)
        yield comparison(bad_sample, BAD, GOOD, pair.source)


def sample_distinct_pair(items: list, scores: list, rng):
    """One (better, worse) pair drawn uniformly from the pairs with distinct scores, or None.

    Askell et al. 2021 App. C.1 samples "two answers with distinct scores"; drawing uniformly over
    such pairs (not over score levels) is our choice, the paper does not say which. O(n), not
    O(n^2): pick the first item with weight = its number of differently-scored partners, then a
    partner uniformly; each unordered pair then has probability 1/(number of such pairs).
    """
    counts = collections.Counter(scores)
    weights = [len(scores) - counts[s] for s in scores]
    if not any(weights):
        return None
    i = rng.choices(range(len(items)), weights=weights)[0]
    j = rng.choice([k for k, s in enumerate(scores) if s != scores[i]])
    return (items[i], items[j]) if scores[i] > scores[j] else (items[j], items[i])
