"""The corpus that benchmarks/input_pipeline.py reads: English-like generated text in .jsonl.gz
part files, built once and reused.

English-like text with a realistic tail, generated deterministically: a word-bigram chain over
the embedded Python reference docs (hh.data.corpus: real prose, code and punctuation, but only
~9k distinct words), 3 % of words replaced by Zipf-distributed pseudo-words (names, rare words:
without them a 65,536-piece BPE runs out of merges and tokens come out unrealistically long) and
1 % by numbers, followed by a few documents of the synthetic HH world (dialogues, facts: very
repetitive). The result tokenizes at ~4.6 bytes per token, close to web English with a 64k BPE.
"""

import gzip
import json
import os
import time

import numpy as np

ONSETS = ["", "b", "c", "d", "f", "g", "h", "j", "k", "l", "m", "n", "p", "r", "s", "t", "v", "w",
          "z", "br", "ch", "cl", "dr", "fl", "gr", "kr", "pl", "pr", "sh", "sk", "st", "str", "th", "tr"]
NUCLEI = ["a", "e", "i", "o", "u", "ai", "ea", "ee", "ie", "oo", "ou", "y"]
CODAS = ["", "", "", "n", "r", "s", "l", "m", "nd", "nt", "rk", "st", "x", "ng"]
PASSAGE_WORDS = 500
SYNTHETIC_PER_DOC = 6
RARE, NUMBERS = 0.03, 0.01


class TextGenerator:
    """Documents of ~3.8 KB; file i's documents depend only on i."""

    def __init__(self, lexicon_size=300_000):
        from hh.data import corpus
        words = []
        for paragraph in corpus.default_documents():
            words += paragraph.split() + ["\n\n"]
        chain, ids = np.unique(np.array(words, dtype=object), return_inverse=True)
        # successors of word w: succ[offsets[w] : offsets[w] + counts[w]], as often as seen
        self.succ = np.roll(ids, -1)[np.argsort(ids, kind="stable")]
        self.counts = np.bincount(ids, minlength=len(chain))
        self.offsets = np.concatenate([[0], np.cumsum(self.counts)[:-1]])
        self.paragraph = int(np.searchsorted(chain, "\n\n"))
        self.n_chain, self.n_lexicon = len(chain), lexicon_size
        numbers = np.array([str(i) for i in range(100_000)], dtype=object)
        self.words = np.concatenate([chain, self._lexicon(lexicon_size), numbers])

    @staticmethod
    def _lexicon(n):
        rng = np.random.default_rng(0)
        syllables = np.array([o + v + c for o in ONSETS for v in NUCLEI for c in CODAS], dtype=object)
        lengths, parts = rng.integers(1, 4, n), rng.integers(0, len(syllables), (n, 3))
        capital = rng.random(n) < 0.3
        words = ("".join(syllables[p[:k]]) for p, k in zip(parts, lengths))
        return np.array([w.capitalize() if c else w for w, c in zip(words, capital)], dtype=object)

    def _passages(self, rng, n):
        """[n, PASSAGE_WORDS] word ids: n chains stepped together (vectorised over documents)."""
        state, out = np.full(n, self.paragraph), np.empty((n, PASSAGE_WORDS), np.int64)
        for j in range(PASSAGE_WORDS):
            state = self.succ[self.offsets[state] + (rng.random(n) * self.counts[state]).astype(np.int64)]
            out[:, j] = state
        u = rng.random(out.shape)
        rare, number = u < RARE, (u >= RARE) & (u < RARE + NUMBERS)
        out[rare] = self.n_chain + np.minimum(rng.zipf(1.15, rare.sum()) - 1, self.n_lexicon - 1)
        out[number] = self.n_chain + self.n_lexicon + np.minimum(
            (10 ** (rng.random(number.sum()) * 5)).astype(np.int64), 99_999)
        return out

    def documents(self, file_index: int, n: int) -> list[str]:
        from hh.data import synthetic
        rng = np.random.default_rng([1, file_index])
        passages = self._passages(rng, n)
        world = synthetic.pretraining_documents(n * SYNTHETIC_PER_DOC, file_index, "tiny")
        docs = []
        for i, ids in enumerate(passages):
            text = " ".join(self.words[ids]).replace(" \n\n ", "\n\n").strip()
            tail = world[i * SYNTHETIC_PER_DOC:(i + 1) * SYNTHETIC_PER_DOC]
            docs.append("\n\n".join([text, *(t.strip() for t in tail)]))
        return docs


def corpus_file(directory, index):
    return os.path.join(directory, f"part-{index:05d}.jsonl.gz")


def ensure_corpus(directory, n_files, docs_per_file) -> dict:
    """Writes the missing part files (each atomically); -> their total text and gzip bytes."""
    os.makedirs(directory, exist_ok=True)
    generator, built, start = None, 0, time.perf_counter()
    for i in range(n_files):
        path = corpus_file(directory, i)
        if os.path.exists(path):
            continue
        generator = generator or TextGenerator()
        tmp = path + ".tmp"
        with gzip.open(tmp, "wt", encoding="utf-8") as f:
            for doc in generator.documents(i, docs_per_file):
                f.write(json.dumps({"text": doc}, ensure_ascii=False) + "\n")
        os.replace(tmp, path)
        built += 1
    generate_s = time.perf_counter() - start if built else None
    if built:
        print(f"generated {built} corpus files in {generate_s:.1f} s", flush=True)
    return {"files": n_files, "files_generated": built, "generate_s": generate_s,
            "documents": n_files * docs_per_file,
            "gzip_bytes": sum(os.path.getsize(corpus_file(directory, i)) for i in range(n_files))}


def text_bytes(manifest_dir) -> int:
    """Uncompressed UTF-8 bytes of a prepared corpus (cached beside the timings: one full read)."""
    from hh.data import shards, text_sources
    total = 0
    for entry in shards.read_manifest(manifest_dir)["shards"]:
        total += sum(len(d.encode("utf-8")) for d in text_sources.file_documents(entry["unit"], "text"))
    return total
