"""Shallow adversaries: the baselines a preference or OOD result has to beat.

A held-out PM accuracy says little if a lookup table over surface features matches it, and an
OOD AUROC says little if "the request holds a word never seen before" matches it. Three baselines,
numpy only and deterministic, reported beside every PM accuracy and OOD AUROC:

- the lookup adversary: add-one smoothed log-odds of (content word of the final request,
  response feature) keys, response features being whether it declines, its content words and
  its numbers; a response scores the sum over its keys;
- a logistic regression on hashed prompt ⊗ response n-gram crosses plus response n-grams alone,
  fitted to the difference of the chosen and rejected feature vectors (Bradley–Terry on a
  linear score, the same loss a PM trains with: Bai et al. 2022 §2.2) by L-BFGS;
- lexical novelty for OOD: how many words of a prompt's final request never occur in the final
  requests of the in-distribution prompts the detector was fitted to.

`python -m hh.eval.adversaries --train_source synthetic-helpful --train_source synthetic-harmless
--test_source synthetic-helpful:test --test_source synthetic-harmless:test --out DIR` writes
adversaries.json (sources built from --config's data section, default configs/pm.py:tiny).
"""

import dataclasses
import functools
import hashlib
import itertools
import json
import math
import re
from collections import Counter

import numpy as np
from absl import app, flags
from etils import epath
from ml_collections import config_flags

from hh.data.dialogue import ASSISTANT, HUMAN
from hh.data.pm_data import as_text
from hh.data.pm_sources import spec_source
from hh.data.sources import PAIR_FIELDS
from hh.eval.ood import auroc
from hh.eval.ood_study import prompt_texts
from hh.eval.pm_eval import accuracy, grouped_accuracy
from hh.io import atomic_write_text

# Phrases a declining response uses; a caller with another dataset passes its own pattern.
REFUSAL = re.compile(r"\b(I can't|I cannot|I won't|I will not|I'd rather not|I don't know|"
                     r"I'm not sure|I am not able|I'm unable|I am unable)\b", re.IGNORECASE)
# Template words: they occur in every request, so keys built on them only add noise.
STOP_WORDS = frozenset(
    "a an the i i'm me my you your it its is are was be do does did can could would should will "
    "how what what's which who when where why to of for in on at by with and or but that this "
    "please tell know way best help".split())
HASH_BUCKETS = 2 ** 18
L2 = 1e-3

_TOKEN = re.compile(r"[a-z]+(?:'[a-z]+)*|\d+")


def final_request(prompt: str) -> str:
    """The last human turn of an hh-format prompt, markers and outer whitespace removed:
    "\\n\\nHuman: hi\\n\\nAssistant: hello\\n\\nHuman: How do I X?\\n\\nAssistant:" -> "How do I X?"."""
    return prompt.rsplit(HUMAN, 1)[-1].split(ASSISTANT, 1)[0].strip()


def tokens(text: str) -> list:
    """Lowercase word tokens (apostrophes kept inside a word) and digit runs, in order."""
    return _TOKEN.findall(text.lower())


def content_words(text: str) -> list:
    """Tokens minus the stop list (numbers included: they are words of a request too)."""
    return [t for t in tokens(text) if t not in STOP_WORDS]


def response_features(response: str, refusal=REFUSAL) -> frozenset:
    """The lookup's view of a response, from its text alone: ("declines", bool), ("word", w) per
    content word, ("number", n) per number."""
    words = content_words(response)
    return frozenset([("declines", bool(refusal.search(response)))]
                     + [("number", w) if w.isdigit() else ("word", w) for w in words])


def lookup_keys(prompt: str, response: str, refusal=REFUSAL) -> frozenset:
    """(content word of the final request, response feature) for every combination."""
    features = response_features(response, refusal)
    return frozenset((w, f) for w in set(content_words(final_request(prompt))) for f in features)


def _texts(pairs) -> list:
    """Rows with prompt/chosen/rejected (str, or bytes from TFDS) -> [(prompt, chosen, rejected)]."""
    return [(as_text(r["prompt"]), as_text(r["chosen"]), as_text(r["rejected"])) for r in pairs]


# --- The lookup adversary -------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Lookup:
    """The fitted lookup table and the refusal pattern its keys were built with."""
    log_odds: dict          # key -> log((chosen count + 1) / (rejected count + 1))
    refusal: re.Pattern

    def score(self, prompt: str, response: str) -> float:
        """Sum of the log-odds of the response's keys (unseen keys count 0)."""
        return float(sum(self.log_odds.get(k, 0.0) for k in lookup_keys(prompt, response, self.refusal)))


def fit_lookup(pairs, refusal=REFUSAL) -> Lookup:
    """Counts each key once per chosen and once per rejected response it occurs in."""
    chosen, rejected = Counter(), Counter()
    for prompt, good, bad in _texts(pairs):
        chosen.update(lookup_keys(prompt, good, refusal))
        rejected.update(lookup_keys(prompt, bad, refusal))
    return Lookup({k: math.log((chosen[k] + 1) / (rejected[k] + 1)) for k in chosen.keys() | rejected.keys()},
                  refusal)


# --- Logistic regression on hashed prompt ⊗ response n-grams -------------------------------------
_K1, _K2, _K3 = np.uint64(0x9E3779B97F4A7C15), np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
_RESPONSE_ONLY = np.uint64(0x5851F42D4C957F2D)   # stands in for the request in uncrossed features


def ngrams(toks: list) -> list:
    """Unigrams and bigrams (joined by a space)."""
    return toks + [f"{a} {b}" for a, b in itertools.pairwise(toks)]


@functools.lru_cache(maxsize=1 << 20)
def _gram_hash(gram: str) -> int:
    # a keyed digest, not hash(): Python salts str hashes per process, features must not move
    return int.from_bytes(hashlib.blake2b(gram.encode(), digest_size=8).digest(), "little")


def _hashes(text: str) -> np.ndarray:
    return np.fromiter((_gram_hash(g) for g in ngrams(tokens(text))), np.uint64)


def _mix(a, b):
    """A 64-bit mix of two hashes (splitmix64's finaliser); uint64 arrays wrap silently."""
    x = (a * _K1) ^ b
    x = (x ^ (x >> np.uint64(30))) * _K2
    x = (x ^ (x >> np.uint64(27))) * _K3
    return x ^ (x >> np.uint64(31))


def pair_features(prompt: str, response: str, buckets: int = HASH_BUCKETS) -> np.ndarray:
    """Sorted distinct bucket indices of φ(prompt, response): every (request n-gram, response
    n-gram) cross and every response n-gram alone; binary presence."""
    request, reply = _hashes(final_request(prompt)), _hashes(response)
    crossed = _mix(request[:, None], reply[None, :]).ravel()
    alone = _mix(np.full_like(reply, _RESPONSE_ONLY), reply)
    return np.unique(np.concatenate([crossed, alone]) % np.uint64(buckets)).astype(np.int64)


@dataclasses.dataclass(frozen=True)
class _Sparse:
    """A sparse matrix as (row, column, value) triples; duplicates add up."""
    rows: np.ndarray
    cols: np.ndarray
    values: np.ndarray
    shape: tuple

    def dot(self, w):
        return np.bincount(self.rows, self.values * w[self.cols], minlength=self.shape[0])

    def tdot(self, g):
        return np.bincount(self.cols, self.values * g[self.rows], minlength=self.shape[1])


def _difference_matrix(pairs, buckets) -> _Sparse:
    """Row i = φ(p_i, chosen_i) − φ(p_i, rejected_i)."""
    texts, rows, cols, values = _texts(pairs), [], [], []
    for i, (prompt, good, bad) in enumerate(texts):
        for sign, response in ((1.0, good), (-1.0, bad)):
            idx = pair_features(prompt, response, buckets)
            rows.append(np.full(len(idx), i, np.int64))
            cols.append(idx)
            values.append(np.full(len(idx), sign))
    if not rows:
        return _Sparse(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0), (0, buckets))
    # features both responses share cancel: merging them first keeps every product small
    cells, where = np.unique(np.concatenate(rows) * buckets + np.concatenate(cols), return_inverse=True)
    summed = np.bincount(where, np.concatenate(values), minlength=len(cells))
    keep = summed != 0
    return _Sparse(cells[keep] // buckets, cells[keep] % buckets, summed[keep], (len(texts), buckets))


def _dot(a, b) -> float:
    """a·b without BLAS: OpenBLAS wakes its thread pool for every vector dot, which on a busy
    machine made the optimiser ten times slower than the loss it optimises."""
    return float(np.einsum("i,i->", a, b))


def _lbfgs(loss_and_grad, w, iterations: int = 200, memory: int = 10, tolerance: float = 1e-6):
    """Minimises a smooth convex function: L-BFGS two-loop recursion, Armijo backtracking."""
    f, g = loss_and_grad(w)
    s_list, y_list, rho_list = [], [], []
    for _ in range(iterations):
        if np.max(np.abs(g)) < tolerance:
            break
        q, alphas = g.copy(), []
        for s, y, rho in reversed(list(zip(s_list, y_list, rho_list))):
            a = rho * _dot(s, q)
            alphas.append(a)
            q -= a * y
        if s_list:
            q *= _dot(s_list[-1], y_list[-1]) / _dot(y_list[-1], y_list[-1])
        else:
            q /= max(np.sqrt(_dot(q, q)), 1.0)    # the first step: at most unit length
        for s, y, rho, a in zip(s_list, y_list, rho_list, reversed(alphas)):
            q += s * (a - rho * _dot(y, q))
        direction, step = -q, 1.0
        slope = _dot(g, direction)
        while True:
            w_new = w + step * direction
            f_new, g_new = loss_and_grad(w_new)
            if f_new <= f + 1e-4 * step * slope or step < 1e-10:
                break
            step *= 0.5
        s, y = w_new - w, g_new - g
        if _dot(s, y) > 1e-12:                       # keep the curvature pairs positive definite
            s_list, y_list = (s_list + [s])[-memory:], (y_list + [y])[-memory:]
            rho_list = (rho_list + [1.0 / _dot(s, y)])[-memory:]
        w, f, g = w_new, f_new, g_new
    return w


@dataclasses.dataclass(frozen=True)
class Logistic:
    """The fitted weights of every hash bucket."""
    weights: np.ndarray     # [buckets]

    def score(self, prompt: str, response: str) -> float:
        """w·φ(prompt, response)."""
        return float(self.weights[pair_features(prompt, response, len(self.weights))].sum())


def fit_logistic(pairs, l2: float = L2, buckets: int = HASH_BUCKETS, iterations: int = 200) -> Logistic:
    """Minimises mean log(1 + exp(−w·(φ(p, chosen) − φ(p, rejected)))) + l2/2·|w|².

    No intercept: the score difference is antisymmetric in the pair, so the mirrored pair
    (−x, label 0) has exactly the loss of (x, label 1) and a swapped pair gets the complementary
    prediction; there is no bias towards whichever side comes first to exploit."""
    full = _difference_matrix(pairs, buckets)
    if full.shape[0] == 0:
        raise ValueError("fit_logistic needs at least one pair")
    # only buckets some pair uses can move off zero: fit in that subspace, it is much smaller
    used, cols = np.unique(full.cols, return_inverse=True)
    x = dataclasses.replace(full, cols=cols.astype(np.int64), shape=(full.shape[0], len(used)))
    n = max(x.shape[0], 1)

    def loss_and_grad(w):
        z = x.dot(w)
        loss = float(np.mean(np.logaddexp(0.0, -z))) if len(z) else 0.0
        minus_p = -np.exp(-np.logaddexp(0.0, z))          # d/dz log(1 + e^−z) = −σ(−z)
        return loss + 0.5 * l2 * _dot(w, w), x.tdot(minus_p) / n + l2 * w

    weights = np.zeros(buckets)
    weights[used] = _lbfgs(loss_and_grad, np.zeros(len(used)), iterations)
    return Logistic(weights)


# --- Evaluation -----------------------------------------------------------------------------------
def fit_adversaries(train_pairs, refusal=REFUSAL) -> dict:
    """{"lookup": Lookup, "logistic": Logistic} fitted on the same pairs."""
    train_pairs = list(train_pairs)
    return {"lookup": fit_lookup(train_pairs, refusal), "logistic": fit_logistic(train_pairs)}


def adversary_accuracy(adversary, pairs) -> dict:
    """{"accuracy", "pairs"} (ties count half), plus "per_family" when rows carry "family"."""
    pairs = list(pairs)
    scored = [(adversary.score(p, c), adversary.score(p, r)) for p, c, r in _texts(pairs)]
    chosen, rejected = np.array([s[0] for s in scored]), np.array([s[1] for s in scored])
    out = {"accuracy": accuracy(chosen, rejected), "pairs": len(pairs)}
    if pairs and all("family" in row for row in pairs):
        out["per_family"] = grouped_accuracy(chosen, rejected, [as_text(row["family"]) for row in pairs])
    return out


def evaluate_adversaries(train_pairs, test_pairs, refusal=REFUSAL) -> dict:
    """{adversary: {"train": accuracy report, "test": accuracy report}} (see adversary_accuracy)."""
    train_pairs, test_pairs = list(train_pairs), list(test_pairs)
    return {name: {"train": adversary_accuracy(a, train_pairs), "test": adversary_accuracy(a, test_pairs)}
            for name, a in fit_adversaries(train_pairs, refusal).items()}


# --- OOD: lexical novelty -------------------------------------------------------------------------
def novelty_scores(fit_prompts, test_prompts, fraction: bool = False) -> np.ndarray:
    """Per test prompt: how many distinct words of its final request occur in no fit prompt's
    final request (or that number over its distinct words, with `fraction`)."""
    seen = set()
    for prompt in fit_prompts:
        seen.update(tokens(final_request(prompt)))
    scores = []
    for prompt in test_prompts:
        words = set(tokens(final_request(prompt)))
        new = len(words - seen)
        scores.append(new / max(len(words), 1) if fraction else float(new))
    return np.asarray(scores, np.float64)


def novelty_auroc(fit_in, test_in, test_out, fraction: bool = False) -> float:
    """AUROC of lexical novelty separating test_out (OOD) from test_in prompts, the vocabulary
    taken from fit_in: what an activation-based detector must beat (Bai et al. 2022 §5.4)."""
    return auroc(novelty_scores(fit_in, test_in, fraction), novelty_scores(fit_in, test_out, fraction))


# --- Command line ---------------------------------------------------------------------------------
def main(argv):
    del argv
    f = flags.FLAGS
    data_cfg = f.config.data

    def pairs(specs, split):
        return [row for spec in specs for row in spec_source(spec, split, data_cfg, fields=PAIR_FIELDS)]

    train = pairs(f.train_source, "train")
    adversaries = fit_adversaries(train)
    report = {"train_sources": list(f.train_source), "train_pairs": len(train), "sets": {},
              "train": {name: adversary_accuracy(a, train) for name, a in adversaries.items()}}
    for spec in f.test_source:
        test = pairs([spec], "test")
        report["sets"][spec] = {name: adversary_accuracy(a, test) for name, a in adversaries.items()}
    if f.ood_source:
        fit_in = prompt_texts(f.ood_in_source, "train", f.n_fit, data_cfg)
        test_in = prompt_texts(f.ood_in_source, "test", f.n_test, data_cfg)
        report["novelty_auroc"] = {"in_source": f.ood_in_source, "n_fit": f.n_fit, "n_test": f.n_test,
                                   **{spec: novelty_auroc(fit_in, test_in,
                                                          prompt_texts(spec, "test", f.n_test, data_cfg))
                                      for spec in f.ood_source}}
    out = epath.Path(f.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "adversaries.json", json.dumps(report, indent=2) + "\n")
    print(json.dumps({spec: {k: v["accuracy"] for k, v in s.items()} for spec, s in report["sets"].items()}))
    if "novelty_auroc" in report:
        print(json.dumps({"novelty_auroc": report["novelty_auroc"]}))


if __name__ == "__main__":
    config_flags.DEFINE_config_file("config", "configs/pm.py:tiny",
                                    "a config whose data section builds the sources")
    flags.DEFINE_multi_string("train_source", ["synthetic-helpful", "synthetic-harmless"],
                              "pairs the adversaries fit (default split train)")
    flags.DEFINE_multi_string("test_source", ["synthetic-helpful:test", "synthetic-harmless:test"],
                              "held-out pair sets (default split test)")
    flags.DEFINE_string("ood_in_source", "synthetic-helpful",
                        "in-distribution prompts (a spec naming no split)")
    flags.DEFINE_multi_string("ood_source", ["synthetic-redteam"],
                              "OOD prompt sources for the novelty AUROC (none: skip it)")
    flags.DEFINE_integer("n_fit", 256, "in-distribution prompts whose words count as seen (as ood_study)")
    flags.DEFINE_integer("n_test", 128, "held-out prompts per side (as ood_study)")
    flags.DEFINE_string("out", None, "output folder")
    flags.mark_flags_as_required(["out"])
    app.run(main)
