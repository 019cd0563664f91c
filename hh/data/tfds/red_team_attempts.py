"""TFDS builder `red_team_attempts`: the 38,961 red-team transcripts of hh-rlhf (docs/paper-notes.md §3).

The real file is one JSON array despite its .jsonl.gz name; JSON lines are accepted too. One key
is misspelled in the release (`task_descripton_harmlessness_score`); both spellings are read.
"""

import math
import os

import numpy as np
import tensorflow_datasets as tfds

from hh.data.errors import DataError
from hh.data.tfds import files
from hh.data.tfds.hh_rlhf import CITATION, URL, manual_dir_or_none

FILE = "red-team-attempts/red_team_attempts.jsonl.gz"
# Pinned by a third-party script that downloads the same raw GitHub URL.
SHA256 = {FILE: "4c7b0069991460f0064f279fd400b51f3f0095697d14d7793c49b0925f80814f"}
TASK_SCORE_KEYS = ("task_description_harmlessness_score", "task_descripton_harmlessness_score")
NUMBER = (int, float)
TEXT = (str, int)   # ids and sizes are numbers in some copies: kept as their decimal text


def _number(path, line, record, key) -> float:
    """A float field; JSON null becomes NaN (a missing key is still an error)."""
    value = files.require(path, line, record, key, NUMBER + (type(None),), "a number or null")
    return math.nan if value is None else float(value)


def _text(path, line, record, key) -> str:
    return str(files.require(path, line, record, key, TEXT, "a string"))


def red_team_example(path, line: int, record) -> dict:
    """The builder's example for one record; DataError (file, line, field) when it is malformed."""
    score_key = next((k for k in TASK_SCORE_KEYS if isinstance(record, dict) and k in record), None)
    # Tags exist for a sample of 1,000 attempts only (the release's README): null or absent is no tags.
    has_tags = isinstance(record, dict) and "tags" in record
    tags = (files.require(path, line, record, "tags", (list, type(None)), "a list or null")
            if has_tags else None) or []
    if not all(isinstance(t, str) for t in tags):
        raise DataError(path, f"field 'tags' should hold strings, got {tags!r}", line)
    return {
        "transcript": files.require(path, line, record, "transcript", (str,), "a string"),
        "min_harmlessness_score_transcript":
            _number(path, line, record, "min_harmlessness_score_transcript"),
        "num_params": _text(path, line, record, "num_params"),
        "model_type": _text(path, line, record, "model_type"),
        "rating": _number(path, line, record, "rating"),
        "task_description": _text(path, line, record, "task_description"),
        "task_description_harmlessness_score":
            math.nan if score_key is None else _number(path, line, record, score_key),
        "red_team_member_id": _text(path, line, record, "red_team_member_id"),
        "is_upworker": files.require(path, line, record, "is_upworker", (bool,), "true or false"),
        "tags": tags,
    }


def read_red_team(path):
    """(record_number, line_number, example) for each attempt; record numbers are 1-based."""
    for number, (line, record) in enumerate(files.iter_json_records(path), 1):
        yield number, line, red_team_example(path, line, record)


class RedTeamAttempts(tfds.core.GeneratorBasedBuilder):
    """Red-team attempts, one split "train". `checksums`: {FILE: sha256 or None}, default SHA256."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "all fields of the release; misspelled key read under both names"}
    MANUAL_DOWNLOAD_INSTRUCTIONS = f"Put the file at <manual_dir>/{FILE}, as in the GitHub repo."

    def __init__(self, *, checksums=None, **kwargs):
        self._checksums = SHA256 if checksums is None else checksums
        super().__init__(**kwargs)

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self,
            description="Anthropic hh-rlhf red-team attempts (Ganguli et al. 2022).",
            features=tfds.features.FeaturesDict({
                "transcript": tfds.features.Text(),
                "min_harmlessness_score_transcript": np.float32,   # PM score; lower = more harmful
                "num_params": tfds.features.Text(),                # "2.7B", "13B", "52B"
                "model_type": tfds.features.Text(),
                "rating": np.float32,                              # red-teamer's 0-4 success rating
                "task_description": tfds.features.Text(),
                "task_description_harmlessness_score": np.float32,  # NaN where absent
                "red_team_member_id": tfds.features.Text(),
                "is_upworker": np.bool_,
                "tags": tfds.features.Sequence(tfds.features.Text()),   # empty where null
                "record": np.int32,                                # 1-based position in the file
                "source_line": np.int32,
            }),
            homepage="https://github.com/anthropics/hh-rlhf",
            citation=CITATION,
            metadata=tfds.core.MetadataDict(),
        )

    def _split_generators(self, dl_manager):
        manual = manual_dir_or_none(dl_manager)
        if manual is None:
            path = dl_manager.download(URL.format(FILE))
        else:
            path = manual / FILE
            if not path.exists():
                raise DataError(path, "file not found in manual_dir: "
                                      + self.MANUAL_DOWNLOAD_INSTRUCTIONS)
        expected = self._checksums.get(FILE)
        self.info.metadata.update(source=os.path.abspath(path),
                                  sha256=files.verify_sha256(path, expected),
                                  sha256_verified=expected is not None)
        return {"train": self._generate_examples(path)}

    def _generate_examples(self, path):
        for number, line, example in read_red_team(path):
            yield number, {**example, "record": number, "source_line": line}
