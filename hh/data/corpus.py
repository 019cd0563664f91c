"""The embedded default corpus (Python's reference docs, see default_corpus/README.md).

Documents are paragraphs; the train/eval split is a fixed hash of each paragraph, so it never
depends on ordering, seeds or the number of processes.
"""

import gzip
import hashlib
import importlib.resources
import pydoc_data.topics as topics
import sys

CORPUS_FILE = "python_docs.txt.gz"


def default_documents() -> list[str]:
    """Paragraphs (blank-line separated) of the embedded corpus, in file order."""
    path = importlib.resources.files("hh.data") / "default_corpus" / CORPUS_FILE
    text = gzip.decompress(path.read_bytes()).decode("utf-8")
    return [p.strip("\n") for p in text.replace("\x0c", "\n\n").split("\n\n") if p.strip()]


def is_eval_document(text: str, eval_fraction: float) -> bool:
    digest = int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big")
    return digest / 2**64 < eval_fraction


def split_documents(documents, eval_fraction: float):
    """(train, eval) lists of documents, split by a content hash."""
    train, held_out = [], []
    for doc in documents:
        (held_out if is_eval_document(doc, eval_fraction) else train).append(doc)
    return train, held_out


def _rebuild(path):
    """Writes the corpus file from this interpreter's pydoc_data (run once, output committed)."""
    docs = [topics.topics[k].replace("\r", "").strip() for k in sorted(topics.topics)]
    with gzip.GzipFile(path, "wb", mtime=0) as f:
        f.write("\n\n\x0c\n\n".join(docs).encode("utf-8"))


if __name__ == "__main__":
    if "--rebuild" in sys.argv:
        _rebuild(str(importlib.resources.files("hh.data") / "default_corpus" / CORPUS_FILE))
    docs = default_documents()
    print(f"{len(docs)} documents, {sum(len(d) for d in docs):,} characters")
