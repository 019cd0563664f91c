"""The PMP comparison sources `pmp-stackexchange`, `pmp-reddit` and `pmp-wikipedia`: raw dumps
under `config.data.manual_dir` -> ranked pairs (the parsers in this package) -> comparison rows.

Askell et al. 2021 §4.1, App. C.1. Layout under manual_dir (every file may be gzipped, whatever
its name; files are read in name order):

    stackexchange/<site>.xml[.gz]  or  stackexchange/<site>/Posts.xml[.gz]   one site's Posts.xml
    reddit/RS_<tag>.jsonl[.gz] + reddit/RC_<tag>.jsonl[.gz]    Pushshift submissions + comments
    wikipedia/<any>.jsonl[.gz]                                 vandalism reverts, one per line

Splits: a pair is in "test" when a hash of its group (StackExchange: site and question; Reddit:
submission; Wikipedia: page) falls in the first TEST_FRACTION of the hash range, so pairs sharing
a question, thread or page never straddle train and test, and the split does not depend on the
seed, the form or the other files. `config.data.pmp_form` picks the rows: "binarized" (§4.1's
GOOD/BAD pairs, two per ranked pair; pairs.binarize) or "ranked" (one A > B row; pairs.to_comparison).
"""

import hashlib
from collections.abc import Iterator

from absl import logging
from etils import epath

from hh.config import ConfigError
from hh.data.errors import DataError
from hh.data.pmp import pairs, reddit, stackexchange, wikipedia

FORMS = ("binarized", "ranked")
SPLITS = ("train", "test")
# Askell et al. 2021 App. C.1 hold out about 1% (59k of 5.8M StackExchange pairs); 5% leaves a
# usable test split in a dump of a few thousand questions too.
TEST_FRACTION = 0.05
LAYOUTS = {
    "stackexchange": "<manual_dir>/stackexchange/<site>.xml[.gz] or "
                     "<manual_dir>/stackexchange/<site>/Posts.xml[.gz] (a data-dump Posts.xml)",
    "reddit": "<manual_dir>/reddit/RS_<tag>.jsonl[.gz] with RC_<tag>.jsonl[.gz] beside it "
              "(Pushshift submissions and comments)",
    "wikipedia": "<manual_dir>/wikipedia/*.jsonl[.gz] (vandalism reverts: page_title, before, "
                 "after, comment)",
}
SOURCES = tuple(pairs.tranche(source) for source in LAYOUTS)   # "pmp-stackexchange", …


def split_of(source: str, group: str) -> str:
    """The split of a group: "test" for about TEST_FRACTION of them (a fixed hash), else "train"."""
    digest = hashlib.sha256(f"{source}:{group}".encode()).digest()
    return "test" if int.from_bytes(digest[:8], "big") < TEST_FRACTION * 2**64 else "train"


def _strip_suffixes(name: str, *suffixes: str) -> str:
    for suffix in suffixes:
        name = name.removesuffix(suffix)
    return name


def _files(folder, *patterns) -> list:
    return sorted({p for pattern in patterns for p in folder.glob(pattern) if p.is_file()})


def _log_skips(path, found: int, skips):
    logging.info("%s: %d ranked pairs; skipped: %s", path, found, dict(skips) or "none")


def stackexchange_units(folder) -> list[tuple]:
    """[(site, Posts file)] under `folder`: one unit per site."""
    flat = _files(folder, "*.xml", "*.xml.gz")
    nested = _files(folder, "*/Posts.xml", "*/Posts.xml.gz")
    return ([(_strip_suffixes(p.name, ".gz", ".xml"), p) for p in flat]
            + [(p.parent.name, p) for p in nested])


def stackexchange_unit_groups(unit, seed: int) -> Iterator[tuple[str, pairs.RankedPair]]:
    """(group "<site>/<question id>", pair) of one site's Posts.xml."""
    site, path = unit
    found, skips = stackexchange.stackexchange_pairs(path, seed, site=site)
    _log_skips(path, len(found), skips)
    for pair in found:
        yield f"{site}/{pair.metadata['question_id']}", pair


def reddit_units(folder) -> list[tuple]:
    """[(submissions file, comments file)] matched by tag; a file without its partner is an error."""
    by_tag = {}
    for path in _files(folder, "R[SC]_*.jsonl", "R[SC]_*.jsonl.gz"):
        tag = _strip_suffixes(path.name, ".gz", ".jsonl")[3:]
        by_tag.setdefault(tag, {})[path.name[:2]] = path
    for tag, found in by_tag.items():
        for kind, other in (("RS", "RC"), ("RC", "RS")):
            if kind in found and other not in found:
                raise DataError(found[kind], f"no {other}_{tag}.jsonl[.gz] beside it: "
                                             f"expected {LAYOUTS['reddit']}")
    return [(found["RS"], found["RC"]) for _, found in sorted(by_tag.items())]


def reddit_unit_groups(unit, seed: int) -> Iterator[tuple[str, pairs.RankedPair]]:
    """(group = submission id, pair) of one RS_/RC_ pair of files, which reddit_pairs reads whole
    (a comment's thread needs its parents): memory is one pair of files."""
    submissions, comments = unit
    found, skips = reddit.reddit_pairs(submissions, comments, seed=seed)
    _log_skips(comments, len(found), skips)
    for pair in found:
        yield pair.metadata["submission_id"], pair


def wikipedia_units(folder) -> list:
    return _files(folder, "*.jsonl", "*.jsonl.gz")


def wikipedia_unit_groups(path, seed: int) -> Iterator[tuple[str, pairs.RankedPair]]:
    """(group = page title, pair) of one reverts file; no draw, so no seed."""
    del seed
    found, skips = wikipedia.wikipedia_pairs(path)
    _log_skips(path, len(found), skips)
    for pair in found:
        yield pair.metadata["page_title"], pair


# source -> (the units under its folder, one unit's (group, pair)s): a unit is what one `prepare`
# worker reads (hh.data.prepare), and the in-memory source reads the units in order.
UNITS = {"stackexchange": (stackexchange_units, stackexchange_unit_groups),
         "reddit": (reddit_units, reddit_unit_groups),
         "wikipedia": (wikipedia_units, wikipedia_unit_groups)}


def unit_rows(source: str, unit, split: str, form: str, seed: int) -> Iterator[dict]:
    """The `split` comparison rows of one unit of `source` ("stackexchange", …), in `form`."""
    for group, pair in UNITS[source][1](unit, seed):
        if split_of(source, group) == split:
            yield from rows_of(pair, form)


def source_folder(source: str, manual_dir: str):
    """<manual_dir>/<source>, which must be a directory."""
    if not manual_dir:
        raise ConfigError(f"config.data.manual_dir is empty: {pairs.tranche(source)} reads "
                          f"{LAYOUTS[source]}")
    folder = epath.Path(manual_dir).expanduser() / source
    if not folder.is_dir():
        raise DataError(folder, f"not a directory: {pairs.tranche(source)} expects "
                                f"{LAYOUTS[source]}")
    return folder


def rows_of(pair: pairs.RankedPair, form: str) -> list[dict]:
    """The comparison rows of one ranked pair in `form`."""
    return list(pairs.binarize([pair])) if form == "binarized" else [pairs.to_comparison(pair)]


def comparisons(name: str, split: str, data_cfg) -> list[dict]:
    """The `split` rows of PMP source `name` (one of SOURCES) from data_cfg.manual_dir, in
    data_cfg.pmp_form; the draws inside the parsers are seeded by data_cfg.seed. Only the rows
    of the split are kept: the other split's pairs are dropped as each file is read."""
    if data_cfg.pmp_form not in FORMS:
        raise ConfigError(f"config.data.pmp_form={data_cfg.pmp_form!r}: choose one of {FORMS}")
    if split not in SPLITS:
        raise ConfigError(f"source {name!r} has no split {split!r}: use one of {SPLITS}")
    source = name.removeprefix("pmp-")
    folder = source_folder(source, data_cfg.manual_dir)
    rows = [row for unit in UNITS[source][0](folder)
            for row in unit_rows(source, unit, split, data_cfg.pmp_form, data_cfg.seed)]
    if not rows:
        raise DataError(folder, f"no {split} pairs for {name}: expected {LAYOUTS[source]} "
                                f"holding pairs the parser keeps (its skip counts are logged)")
    return rows
