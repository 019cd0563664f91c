"""The repository stands alone: no file points at documents that live outside it, and no comment
or doc narrates the project's history.

A user has the checkout and nothing else, so a comment must cite the paper (e.g. "Bai et al. 2022
§4.1") or docs/paper-notes.md, never a notes file beside the checkout. The one place outside the
tree that code may read is a local copy of the hh-rlhf dataset (tests/real_data.py, and the
benchmarks' `--manual_dir` default), overridable with HH_RLHF_DIR.
"""

import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
THIS_FILE = "tests/test_standalone.py"

# Path components never scanned: virtual environments (the tunix peer's lives in benchmarks/peers),
# run outputs, git's own folder.
SKIPPED_PARTS = {".git", "runs", "__pycache__", ".pytest_cache"}

OUTSIDE_DOCUMENTS = re.compile(r"PAPER-SPEC|RLHF-NOTES|ISSUE-NOTES|ENV-NOTES|STYLE\.md|\.\./shared")
# The local copy of the dataset beside the checkout: a data path, allowed only where it is defined.
DATA_COPY = re.compile(r"shared/data")
DATA_COPY_ALLOWED = {"tests/real_data.py", "benchmarks/pm_cross_matrix.py",
                     "benchmarks/pm_harmless_base.py", "docs/data.md"}

# "issue 7", "(issue", "later issues", "the issue's ...", "the issue asks/names/lists ...".
HISTORY = re.compile(r"\bissues?\s*#?\d+|\(issue\b|\blater issues\b|\bthe issue's\b"
                     r"|\bthe issue (?:asks|names|lists|says)\b", re.IGNORECASE)
HISTORY_SCOPE = ("hh/", "configs/", "launch/", "docs/", "benchmarks/", "tests/", "notebooks/",
                 "README.md", "Makefile", "setup.py")


def is_skipped(rel: str) -> bool:
    parts = rel.split("/")
    return any(part in SKIPPED_PARTS or part.startswith(".venv") for part in parts)


def repository_files() -> list[str]:
    """Tracked and not-ignored untracked files (git), else every file of the tree; relative paths."""
    try:
        listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"],
                                cwd=REPO, capture_output=True, text=True, check=True).stdout
        names = listed.splitlines()
    except (OSError, subprocess.CalledProcessError):   # no git, or not a checkout (a source copy)
        names = [str(p.relative_to(REPO)) for p in REPO.rglob("*") if p.is_file()]
    return sorted(n for n in names if not is_skipped(n) and n != THIS_FILE and (REPO / n).is_file())


def text_lines(rel: str):
    """(line number, line) of a text file; nothing for binary files."""
    try:
        text = (REPO / rel).read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError):
        return []
    return enumerate(text.splitlines(), start=1)


def offending_lines(pattern, files, allowed=frozenset()) -> list[str]:
    return [f"{rel}:{number}: {line.strip()[:120]}"
            for rel in files if rel not in allowed
            for number, line in text_lines(rel) if pattern.search(line)]


def test_scan_sees_the_repository():
    files = repository_files()
    assert "hh/models/transformer.py" in files and "docs/paper-notes.md" in files
    assert not any(is_skipped(f) for f in files)


def test_no_reference_to_documents_outside_the_repository():
    found = offending_lines(OUTSIDE_DOCUMENTS, repository_files())
    assert not found, ("cite the paper or docs/paper-notes.md instead of a file outside the "
                       "repository:\n" + "\n".join(found))


def test_local_dataset_copy_is_named_in_one_place():
    found = offending_lines(DATA_COPY, repository_files(), allowed=DATA_COPY_ALLOWED)
    assert not found, ("read the local hh-rlhf copy through tests/real_data.py or $HH_RLHF_DIR:\n"
                       + "\n".join(found))


def test_no_history_narration():
    files = [f for f in repository_files() if f.startswith(HISTORY_SCOPE)]
    found = offending_lines(HISTORY, files)
    assert not found, ("say what is true now and why, not which issue did it:\n" + "\n".join(found))


def test_patterns_catch_what_they_should():
    assert OUTSIDE_DOCUMENTS.search("see ../shared/notes") and OUTSIDE_DOCUMENTS.search("(PAPER-SPEC §3)")
    assert HISTORY.search("(issue 7)") and HISTORY.search("later issues register more")
    assert HISTORY.search("the issue's main job") and HISTORY.search("Issue 3 replaces it")
    assert not HISTORY.search("a known issue with XLA") and not HISTORY.search("trl#734")
