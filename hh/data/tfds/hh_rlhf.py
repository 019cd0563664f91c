"""TFDS builder `hh_rlhf`: Anthropic's preference pairs, one config per tranche (docs/paper-notes.md §3).

raw `<tranche>/{train,test}.jsonl.gz` → (prompt, chosen, rejected) examples in array_record files,
read without TensorFlow through `builder.as_data_source(split)`. Offline machines pass `manual_dir`
laid out like github.com/anthropics/hh-rlhf; splits whose file is absent are not built, and say so.
The `local` tranches are the user's own comparisons (hh.serve.export), rebuilt when their files change.
"""

import collections
import os

import numpy as np
import tensorflow_datasets as tfds
from absl import logging
from etils import epath

from hh.data import dialogue, records
from hh.data.errors import DataError
from hh.data.tfds import files

TRANCHES = ("helpful-base", "helpful-online", "helpful-rejection-sampled", "harmless-base")
# The user's own comparisons, written by `python -m hh.serve.export --tranche_dir <manual_dir>`:
# "local" for helpful (or mixed) data, "local-harmless" for red-team data, so a PM config can put
# them in helpful_sources and harmless_sources. Plain .jsonl is accepted too; no hash is pinned.
LOCAL_TRANCHES = ("local", "local-harmless")
LOCAL_SUFFIXES = (".jsonl.gz", ".jsonl")
SPLITS = ("train", "test")
URL = "https://github.com/anthropics/hh-rlhf/raw/master/{}"   # serves git-lfs content too
# The sha256 of each released file (= its git-lfs oid); None where no trustworthy value is known: the file's
# actual hash is then recorded in the dataset's metadata instead of checked.
SHA256 = {
    "helpful-base/train.jsonl.gz":
        "518a5bf288456fc9f3b7c980c54116fba0c52f274d3f4d344675d83e4058f6f4",
    "helpful-base/test.jsonl.gz":
        "8be3fc1a13b27901631696f2be6f184c799f1baeaf145f53ac5db24960adc37b",
    "helpful-online/train.jsonl.gz":
        "0994d18b82083f5c084ce04071b683958a724df8c7215ab1d851986642d36a2a",
    "helpful-online/test.jsonl.gz":
        "39a475cc7e0df972902f8e3a0972726fce826ac65369bda8c671de4330c60a10",
    "helpful-rejection-sampled/train.jsonl.gz":
        "0cea2d2ab2187624ec1314e8cc6fb579f0fa987b3a33e8102b7556ed4d255f64",
    "helpful-rejection-sampled/test.jsonl.gz":
        "abc35dbc56015db1dae0faa484514ccbc3eee0133bfcd557fc69250619b028bb",
    "harmless-base/train.jsonl.gz": None,
    "harmless-base/test.jsonl.gz":
        "ebfaaed21162a4de120ae85366075b34425e2a6303fac59b99555002f7016f03",
}
FLAGS = ("prompts_differ", "empty_chosen", "empty_rejected", "identical")
CITATION = """@article{bai2022training,
  title={Training a Helpful and Harmless Assistant with Reinforcement Learning from Human Feedback},
  author={Bai, Yuntao and others}, journal={arXiv preprint arXiv:2204.05862}, year={2022}}"""
MANUAL_DOWNLOAD_INSTRUCTIONS = """Lay out manual_dir like github.com/anthropics/hh-rlhf:
<manual_dir>/<tranche>/{train,test}.jsonl.gz (git-lfs content, not pointers). Splits whose file is
missing are not built."""


def local_source_files(tranche_dir) -> dict:
    """{split: path} of a local tranche's files; a split with both suffixes is ambiguous: an error."""
    found = {}
    for split in SPLITS:
        paths = [tranche_dir / f"{split}{suffix}" for suffix in LOCAL_SUFFIXES]
        present = [p for p in paths if p.exists()]
        if len(present) > 1:
            raise DataError(present[0], f"both {present[0].name} and {present[1].name} exist for "
                                        f"split {split!r}: remove the one that is out of date")
        if present:
            found[split] = present[0]
    return found


def read_comparisons(path):
    """(line_number, chosen, rejected) for each record of a JSON-lines comparison file."""
    for line, record in records.json_lines(path):
        chosen = files.require(path, line, record, "chosen", (str,), "a string")
        rejected = files.require(path, line, record, "rejected", (str,), "a string")
        yield line, chosen, rejected


def split_comparison(path, line, chosen, rejected) -> dialogue.PairSplit:
    try:
        return dialogue.split_pair(chosen, rejected)
    except ValueError as e:
        raise DataError(path, str(e), line) from None


def manual_dir_or_none(dl_manager):
    """The manual_dir if one was given and is not empty, else None (then we download)."""
    try:
        return dl_manager.manual_dir
    except AssertionError:   # TFDS's way of saying "not given, absent or empty"
        return None


def requested_split_names(split) -> list[str]:
    """Base split names in a TFDS split request: "train[:10%]+test" → ["train", "test"]."""
    if split is None:
        return []
    if isinstance(split, str):
        return [part.split("[")[0].strip() for part in split.split("+")]
    if isinstance(split, (list, tuple)):
        return [name for s in split for name in requested_split_names(s)]
    return []


class HhRlhf(tfds.core.GeneratorBasedBuilder):
    """hh-rlhf preference pairs; `keep_policy` (keys of dialogue.POLICY_FLAGS) says what to skip."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "prompt/response split by the last Assistant turn of each transcript"}
    BUILDER_CONFIGS = (
        [tfds.core.BuilderConfig(name=t, description=f"hh-rlhf {t}") for t in TRANCHES]
        + [tfds.core.BuilderConfig(name=t, description=f"your own comparisons, {t}")
           for t in LOCAL_TRANCHES])
    MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS

    def __init__(self, *, keep_policy=None, checksums=None, **kwargs):
        """keep_policy: None keeps everything (or reuses the built dataset's policy); checksums:
        {"<tranche>/<split>.jsonl.gz": sha256 or None}, default SHA256."""
        self._keep_policy = dialogue.resolve_policy(keep_policy)
        self._checksums = SHA256 if checksums is None else checksums
        super().__init__(**kwargs)
        built = self.info.metadata["keep_policy"]   # a lazy dict: .get() would not load it
        if keep_policy is not None and built != self._keep_policy:
            # A prepared dataset is reused as is, so a different policy would be silently ignored.
            raise ValueError(f"{self.data_dir} was built with keep_policy={built}, asked for "
                             f"{self._keep_policy}: use another data_dir")

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self,
            description="Anthropic hh-rlhf comparisons split into prompt and responses.",
            features=tfds.features.FeaturesDict({
                "prompt": tfds.features.Text(),            # ends with "\n\nAssistant:"
                "rejected_prompt": tfds.features.Text(),   # + rejected = rejected transcript
                "chosen": tfds.features.Text(),            # prompt + chosen = chosen transcript
                "rejected": tfds.features.Text(),
                "num_turns": np.int32,                     # human turns in the prompt
                "tranche": tfds.features.Text(),
                "source_line": np.int32,                   # 1-based line in the source file
                **{flag: np.bool_ for flag in FLAGS},
            }),
            homepage="https://github.com/anthropics/hh-rlhf",
            citation=CITATION,
            metadata=tfds.core.MetadataDict(keep_policy=self._keep_policy, splits={},
                                            missing_splits={}),
        )

    def _source_files(self, dl_manager) -> tuple[dict, dict]:
        """({split: path} to build, {split: expected path} that is missing)."""
        tranche = self.builder_config.name
        manual = manual_dir_or_none(dl_manager)
        local = tranche in LOCAL_TRANCHES
        if manual is None and local:
            raise DataError(f"hh_rlhf/{tranche}", "a local tranche is read from manual_dir "
                                                  "(data.manual_dir): there is nothing to download")
        if manual is None:
            urls = {s: URL.format(f"{tranche}/{s}.jsonl.gz") for s in SPLITS}
            return dl_manager.download(urls), {}
        wanted = {s: manual / tranche / f"{s}.jsonl.gz" for s in SPLITS}
        found = (local_source_files(manual / tranche) if local
                 else {s: p for s, p in wanted.items() if p.exists()})
        if not found:
            raise DataError(manual / tranche, f"no {' or '.join(SPLITS)} .jsonl.gz file for "
                                              f"tranche {tranche}: {MANUAL_DOWNLOAD_INSTRUCTIONS}")
        return found, {s: os.path.abspath(p) for s, p in wanted.items() if s not in found}

    def sources_changed(self, manual_dir) -> bool:
        """Whether this is a built local tranche whose files in `manual_dir` now differ from those
        it was built from (by sha256, or in which splits exist). TFDS reuses any build of a version,
        right for the released files (pinned hashes) but stale after a new export: `prepare` asks
        this and rebuilds. Without a manual_dir there is nothing to compare: False."""
        if (self.builder_config.name not in LOCAL_TRANCHES or manual_dir is None
                or not self.data_path.exists()):
            return False
        tranche_dir = epath.Path(manual_dir) / self.builder_config.name
        now = {s: files.sha256_file(p) for s, p in local_source_files(tranche_dir).items()}
        built = {s: report["sha256"] for s, report in self.info.metadata["splits"].items()}
        return now != built

    def _split_generators(self, dl_manager):
        tranche = self.builder_config.name
        paths, missing = self._source_files(dl_manager)
        self.info.metadata["missing_splits"] = missing
        for split, path in missing.items():
            logging.warning("hh_rlhf/%s: split %r not built: %s does not exist",
                            tranche, split, path)
        generators = {}
        for split, path in paths.items():
            expected = self._checksums.get(f"{tranche}/{split}.jsonl.gz")   # None for local ones
            actual = files.verify_sha256(path, expected)   # before any example is written
            report = {"source": os.path.abspath(path), "sha256": actual,
                      "sha256_verified": expected is not None}
            self.info.metadata["splits"][split] = report
            generators[split] = self._generate_examples(path, report)
        return generators

    def _generate_examples(self, path, report):
        """Yields (line, example); fills `report` with the flag and skip counts as it goes."""
        tranche = self.builder_config.name
        flagged, skipped, n_read = collections.Counter(), collections.Counter(), 0
        for line, chosen, rejected in read_comparisons(path):
            n_read += 1
            pair = split_comparison(path, line, chosen, rejected)
            flagged.update(flag for flag in FLAGS if getattr(pair, flag))
            keep, reason = dialogue.keep_pair(pair, self._keep_policy)
            if not keep:
                skipped[reason] += 1
                continue
            yield line, {
                "prompt": pair.prompt, "rejected_prompt": pair.rejected_prompt,
                "chosen": pair.chosen, "rejected": pair.rejected, "num_turns": pair.num_turns,
                "tranche": tranche, "source_line": line,
                **{flag: getattr(pair, flag) for flag in FLAGS},
            }
        report.update(pairs_read=n_read, pairs_kept=n_read - sum(skipped.values()),
                      flagged=dict(sorted(flagged.items())), skipped=dict(sorted(skipped.items())))
        logging.info("hh_rlhf/%s %s: %d pairs read, flagged %s",
                     tranche, path, n_read, dict(flagged))
        if skipped:
            logging.warning("hh_rlhf/%s %s: skipped %s (keep_policy=%s)", tranche, path,
                            dict(skipped), self._keep_policy)

    def as_data_source(self, split=None, **kwargs):
        """As TFDS's, but asking for a split whose source file was missing says so."""
        missing = self.info.metadata["missing_splits"]
        remedy = ("Add the file and prepare again: a local tranche is rebuilt when its files change."
                  if self.builder_config.name in LOCAL_TRANCHES
                  else "Add the file and rebuild into a fresh data_dir.")
        for name in requested_split_names(split):
            if name in missing:
                raise DataError(missing[name], (
                    f"split {name!r} of {self.info.full_name} was not built: this file was "
                    f"missing when it was prepared in {self.data_dir}; built splits: "
                    f"{sorted(self.info.splits)}. {remedy}"))
        return super().as_data_source(split, **kwargs)
