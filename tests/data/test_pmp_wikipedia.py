"""Wikipedia vandalism reverts -> ranked pairs: section splitting, wikitext cleaning, one pair per
edited section with the restored text better, skip counts and bad-input errors."""

import collections
import gzip
import json

import pytest

from hh.data.errors import DataError
from hh.data.pmp.pairs import binarize
from hh.data.pmp.wikipedia import clean_wikitext, split_sections, wikipedia_pairs

RESTORED = """{{Short description|Small domesticated mammal}}
The '''cat''' is a [[mammal|small mammal]].<ref name="a">Smith 2001, p. 3.</ref>

== Behaviour ==
Cats sleep a lot.{{cn}}

== References ==
{{reflist}}
"""
VANDALISED = (RESTORED.replace("small mammal]].", "small mammal]]. CATS ARE DUMB LOL")
              .replace("{{cn}}", "{{cn|date=May 2020}}").replace("{{reflist}}", "{{reflist|2}}"))


def revert(before, after, comment="Reverting possible vandalism by 1.2.3.4", title="Cat"):
    return {"page_title": title, "before": before, "after": after, "comment": comment}


REVERTS = [
    revert(VANDALISED, RESTORED),
    revert("Dogs bark.", "Dogs bark loudly.", comment="Undid good-faith edit: unsourced"),
    revert("Same text.", "Same text.", comment="rv vandalism"),
    revert("Lead.\n== History ==\nFounded 1900.\n", "Lead.\n== Poop ==\nFounded 1900.\n",
           comment="rv vandal"),
    revert("Lead.\n== History ==\n\n== Geography ==\nHills.\n",
           "Lead.\n== History ==\nFounded in 1900 by [[John Smith (mayor)|Smith]].\n"
           "== Geography ==\nHills.\n", comment="Reverted Vandalism", title="Springfield"),
]


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def test_split_sections():
    assert split_sections("Lead\n== A ==\nx\n=== A.1 ===\ny\n==B==\nz") == [
        ("Introduction", "Lead\n"), ("A", "\nx\n"), ("A.1", "\ny\n"), ("B", "\nz")]
    assert split_sections("") == [("Introduction", "")]
    assert split_sections("a == b == c") == [("Introduction", "a == b == c")]   # not a heading


@pytest.mark.parametrize("wikitext, text", [
    ("A [[mammal|small mammal]] of the [[Felidae]].", "A small mammal of the Felidae."),
    ("Fact.<ref>Smith</ref> More.<ref name=\"x\" /> End.<ref name=y>a\nb</ref>",
     "Fact. More. End."),
    ("Text{{citation needed|date={{CURRENTYEAR}}}} here.", "Text here."),
    ("Before\n{| class=\"wikitable\"\n|-\n| a || {{nowrap|b}}\n|}\nAfter", "Before\n\nAfter"),
    ("[[File:Cat.jpg|thumb|A [[cat]] sitting]]\nCats.[[Category:Felines]]", "Cats."),
    ("[[Image:x.png]]See [http://example.org the site] or [https://x.org].", "See the site or ."),
    ("'''Bold''' and ''italic''<br/> line<!-- hidden -->.", "Bold and italic line."),
    ("__NOTOC__\nA\n\n\n\nB  ", "A\n\nB"),
])
def test_clean_wikitext(wikitext, text):
    assert clean_wikitext(wikitext) == text


def test_pairs_are_exact_and_skips_counted(tmp_path):
    pairs, skips = wikipedia_pairs(write_jsonl(tmp_path / "reverts.jsonl", REVERTS))
    assert [(p.context, p.better, p.worse) for p in pairs] == [
        ("PAGE TITLE: Cat\n\nSECTION TITLE: Introduction\n\n",
         "SECTION BODY: The cat is a small mammal.",
         "SECTION BODY: The cat is a small mammal. CATS ARE DUMB LOL"),
        # Blanking a section is vandalism too: the restored text beats the empty body.
        ("PAGE TITLE: Springfield\n\nSECTION TITLE: History\n\n",
         "SECTION BODY: Founded in 1900 by Smith.", "SECTION BODY: "),
    ]
    assert pairs[1].metadata == {"page_title": "Springfield", "section_title": "History",
                                 "line": 5, "comment": "Reverted Vandalism"}
    assert skips == collections.Counter({
        "section: no visible change after cleaning": 1,   # Cat/Behaviour: only {{cn}} changed
        "section: reference section": 1,                  # Cat/References
        "revert: comment does not match comment_pattern": 1,   # line 2
        "revert: no section differs": 1,                  # line 3
        "section: added or removed by the edit": 2})      # line 4: History <-> Poop


@pytest.mark.parametrize("name", ["reverts.jsonl.gz", "reverts.jsonl"])
def test_gzipped_reverts_are_read_by_their_magic_bytes(tmp_path, name):
    plain = write_jsonl(tmp_path / "plain.jsonl", REVERTS)
    zipped = tmp_path / name
    zipped.write_bytes(gzip.compress(plain.read_bytes()))
    assert wikipedia_pairs(zipped) == wikipedia_pairs(plain)


def test_comment_pattern_is_a_parameter(tmp_path):
    path = write_jsonl(tmp_path / "reverts.jsonl", REVERTS)
    pairs, skips = wikipedia_pairs(path, comment_pattern=None)
    assert len(pairs) == 3 and "revert: comment does not match comment_pattern" not in skips
    assert pairs[1].better == "SECTION BODY: Dogs bark loudly."


def test_binarized(tmp_path):
    pairs, _ = wikipedia_pairs(write_jsonl(tmp_path / "reverts.jsonl", REVERTS))
    binary = list(binarize(pairs))
    assert len(binary) == 4
    assert binary[2] == {
        "prompt": "PAGE TITLE: Springfield\n\nSECTION TITLE: History\n\n"
                  "SECTION BODY: Founded in 1900 by Smith.\n\n",
        "chosen": "GOOD", "rejected": "BAD", "num_turns": 1, "tranche": "pmp-wikipedia"}


GOOD_LINE = json.dumps(revert("a vandal", "a")).encode() + b"\n"


@pytest.mark.parametrize("content, message", [
    (b"", r"reverts.jsonl: empty file"),
    (GOOD_LINE + b"{not json}\n", r"reverts.jsonl, line 2: malformed JSON"),
    (GOOD_LINE + json.dumps({"page_title": "X", "before": "", "comment": ""}).encode(),
     r"reverts.jsonl, line 2: missing field 'after'"),
    (json.dumps({**revert("a", "b"), "before": None}).encode(),
     r"reverts.jsonl, line 1: field 'before' must be str"),
    (GOOD_LINE.replace(b"vandal\"", b"vand\xff\""), r"reverts.jsonl, line 1: invalid UTF-8"),
    (b'"just a string"\n', r"reverts.jsonl, line 1: expected a JSON object, got str"),
])
def test_bad_input_raises_data_error_naming_file_and_line(tmp_path, content, message):
    path = tmp_path / "reverts.jsonl"
    path.write_bytes(content)
    with pytest.raises(DataError, match=message):
        wikipedia_pairs(path)
