"""Reddit Pushshift JSON lines -> ranked pairs of sibling threads: exact strings, aliases, the
whitelist, deleted/bot filtering, tie and skip counts, determinism and bad-input errors."""

import collections
import gzip
import json

import pytest

from hh.data.errors import DataError
from hh.data.pmp.pairs import binarize
from hh.data.pmp.reddit import alias, alias_table, anonymize, drop_reason, reddit_pairs


def sub(i, author, title, selftext="", subreddit="science"):
    return {"id": i, "author": author, "title": title, "selftext": selftext,
            "subreddit": subreddit, "score": 100}


def com(i, parent, author, body, score, link="s1", subreddit="science"):
    return {"id": i, "parent_id": parent, "link_id": f"t3_{link}", "author": author, "body": body,
            "score": score, "subreddit": subreddit}


SUBMISSIONS = [
    sub("s1", "alice", "Why is the sky blue?", "Asking for u/bob."),
    sub("s2", "judge", "AITA for this?", "Long story.", subreddit="AmItheAsshole"),
    sub("s3", "[deleted]", "Gone", "[deleted]"),
    sub("s4", "carol", "TIL octopuses have three hearts", "", subreddit="todayilearned"),
]
COMMENTS = [
    com("c1", "t3_s1", "bob", "Rayleigh scattering.", 10),
    com("c2", "t3_s1", "dave", "Because it reflects the ocean.", 2),
    com("c3", "t3_s1", "AutoModerator", "Please be civil.", 1),
    com("c4", "t1_c1", "alice", "Thanks u/Bob!", 5),                    # same user as the OP
    com("c5", "t1_c1", "eve", "Not quite &amp; ask /u/zed", 1),        # zed: only mentioned
    com("c6", "t1_c2", "[deleted]", "[deleted]", 3),
    com("c7", "t1_c6", "frank", "Replying to a deleted comment.", 2),
    com("c8", "t1_c2", "helperbot", "Beep boop.", 9),
    com("c9", "t3_s2", "juror", "YTA", 50, link="s2", subreddit="AmItheAsshole"),
    com("c10", "t3_s3", "gina", "Under a deleted post.", 1, link="s3"),
    com("c11", "t3_s404", "hal", "Submission missing.", 1, link="s404"),
    com("c12", "t1_c404", "ivy", "Parent missing.", 1),
    com("c13", "t3_s4", "carol", "Source: a book.", 3, link="s4", subreddit="todayilearned"),
    com("c14", "t3_s4", "Greg", "And blue blood!", 7, link="s4", subreddit="todayilearned"),
    com("c15", "t1_c13", "hank", "Which book?", 1, link="s4", subreddit="todayilearned"),
    com("c16", "t1_c2", "ike", "No, that is a myth.", 4),
    com("c17", "t1_c2", "jan", "It is scattering.", 4),
]


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


@pytest.fixture
def dump(tmp_path):
    return (write_jsonl(tmp_path / "RS.jsonl", SUBMISSIONS),
            write_jsonl(tmp_path / "RC.jsonl", COMMENTS))


def test_alias_letters():
    assert [alias(i) for i in (0, 1, 25, 26, 27, 701, 702)] == [
        "User A", "User B", "User Z", "User AA", "User AB", "User ZZ", "User AAA"]


def test_alias_table_and_mentions():
    table = alias_table(["Alice", "bob", "alice"], ["hi u/Carol and /u/BOB", "not au/x"])
    assert table == {"alice": "User A", "bob": "User B", "carol": "User C"}
    assert anonymize("hi u/Carol and /u/BOB", table) == "hi User C and User B"


@pytest.mark.parametrize("author, text, reason", [
    ("[deleted]", "[deleted]", "deleted or removed"),
    ("someone", "[removed]", "deleted or removed"),
    ("AutoModerator", "Rules.", "bot author"), ("RemindMeBot", "Ok.", "bot author"),
    ("tldrbot", "Ok.", "bot author"), ("bob", "  ", "empty text"), ("bob", "Hi.", None)])
def test_drop_reason(author, text, reason):
    assert drop_reason(author, text) == reason


def test_pairs_are_exact(dump):
    pairs, _ = reddit_pairs(*dump)
    assert [(p.context, p.better, p.worse) for p in pairs] == [
        ("SUBMISSION by User A: Why is the sky blue?\n\nAsking for User B.\n\n",
         "COMMENT by User B: Rayleigh scattering.",
         "COMMENT by User C: Because it reflects the ocean."),
        # Deeper thread: alice (the OP) keeps "User A" as a commenter; bob is "User B" as an
        # author and as a mention; the merely mentioned zed gets the next free alias.
        ("SUBMISSION by User A: Why is the sky blue?\n\nAsking for User B.\n\n"
         "COMMENT by User B: Rayleigh scattering.\n\n",
         "COMMENT by User A: Thanks User B!",
         "COMMENT by User C: Not quite & ask User D"),
        # A link post: the title alone is the submission.
        ("SUBMISSION by User A: TIL octopuses have three hearts\n\n",
         "COMMENT by User B: And blue blood!", "COMMENT by User A: Source: a book."),
    ]
    assert pairs[2].metadata == {"subreddit": "todayilearned", "submission_id": "s4",
                                 "better_id": "c14", "worse_id": "c13", "better_score": 7,
                                 "worse_score": 3}
    assert {p.source for p in pairs} == {"reddit"}


def test_gzipped_dumps_are_read_by_their_magic_bytes(dump, tmp_path):
    """Pushshift ships compressed dumps: the same pairs from gzip, whatever the file is named."""
    expected, _ = reddit_pairs(*dump)
    zipped = []
    for path, name in zip(dump, ("RS.jsonl.gz", "RC.jsonl")):   # the second keeps a plain name
        zipped.append(tmp_path / "gz" / name)
        zipped[-1].parent.mkdir(exist_ok=True)
        zipped[-1].write_bytes(gzip.compress(path.read_bytes()))
    pairs, _ = reddit_pairs(*zipped)
    assert [(p.context, p.better, p.worse) for p in pairs] == [
        (p.context, p.better, p.worse) for p in expected]


def test_no_username_survives(dump):
    pairs, _ = reddit_pairs(*dump)
    text = "".join(c for p in binarize(pairs) for c in (p["prompt"], p["chosen"], p["rejected"]))
    for name in ("alice", "bob", "dave", "eve", "zed", "carol", "Greg"):
        assert name not in text


def test_skips_are_counted_by_reason(dump):
    _, skips = reddit_pairs(*dump)
    assert skips == collections.Counter({
        "submission: subreddit not in whitelist": 1,      # s2 (AmItheAsshole)
        "submission: deleted or removed": 1,              # s3
        "comment: subreddit not in whitelist": 1,         # c9
        "comment: bot author": 2,                         # c3 AutoModerator, c8 helperbot
        "comment: deleted or removed": 1,                 # c6
        "comment: below a dropped comment": 1,            # c7
        "comment: below a dropped submission": 1,         # c10
        "comment: submission not in dump": 1,             # c11
        "comment: ancestor comment not in dump": 1,       # c12
        "sibling group: all scores tied": 1,              # c16 = c17 = 4 under c2
        "sibling group: only one comment": 1})            # c15 under c13


def test_whitelist_is_a_case_insensitive_parameter(dump):
    pairs, skips = reddit_pairs(*dump, subreddits=("SCIENCE",))
    assert len(pairs) == 2 and skips["submission: subreddit not in whitelist"] == 2
    pairs, _ = reddit_pairs(*dump, subreddits=("AmItheAsshole",))
    assert pairs == []


def test_draw_is_deterministic_and_ignores_file_order(tmp_path):
    subs = write_jsonl(tmp_path / "RS.jsonl", [sub("s1", "op", "Q")])
    kids = [com(f"k{i}", "t3_s1", f"user{i}", f"reply {i}", 2 ** i) for i in range(6)]
    forward = write_jsonl(tmp_path / "f.jsonl", kids)
    backward = write_jsonl(tmp_path / "b.jsonl", kids[::-1])

    def pick(path, seed):
        (pair,), _ = reddit_pairs(subs, path, seed=seed)
        return pair.metadata["better_id"], pair.metadata["worse_id"]

    assert pick(forward, 0) == pick(forward, 0) == pick(backward, 0)
    assert len({pick(forward, seed) for seed in range(20)}) > 1


def bad_file(tmp_path, content: bytes):
    path = tmp_path / "RC.jsonl"
    path.write_bytes(content)
    return path


GOOD_LINE = json.dumps(com("c1", "t3_s1", "bob", "hi", 1)).encode() + b"\n"


@pytest.mark.parametrize("content, message", [
    (b"", r"RC.jsonl: empty file"),
    (b"\n  \n", r"RC.jsonl: empty file: no records"),
    (GOOD_LINE + b'{"id": "c2", \n', r"RC.jsonl, line 2: malformed JSON"),
    (GOOD_LINE + b"[1, 2]\n", r"RC.jsonl, line 2: expected a JSON object, got list"),
    (GOOD_LINE + GOOD_LINE.replace(b'"score": 1, ', b""),
     r"RC.jsonl, line 2: missing field 'score'"),
    (GOOD_LINE.replace(b'"score": 1', b'"score": "1"'),
     r"RC.jsonl, line 1: field 'score' must be int"),
    (GOOD_LINE + GOOD_LINE.replace(b"hi", b"caf\xe9"), r"RC.jsonl, line 2: invalid UTF-8"),
    (GOOD_LINE.replace(b"t3_s1", b"s1", 1), r"RC.jsonl, line 1: field 'parent_id' must start"),
    (json.dumps(com("a", "t1_b", "x", "y", 1)).encode() + b"\n"
     + json.dumps(com("b", "t1_a", "x", "y", 1)).encode(), r"RC.jsonl: comment 'a' is its own"),
])
def test_bad_input_raises_data_error_naming_file_and_line(tmp_path, content, message):
    subs = write_jsonl(tmp_path / "RS.jsonl", [sub("s1", "op", "Q")])
    with pytest.raises(DataError, match=message):
        reddit_pairs(subs, bad_file(tmp_path, content))


def test_bad_submission_file_is_named(tmp_path):
    subs = tmp_path / "RS.jsonl"
    subs.write_text(json.dumps({"id": "s1", "author": "op", "title": "Q", "subreddit": "science"}))
    comments = write_jsonl(tmp_path / "RC.jsonl", COMMENTS)
    with pytest.raises(DataError, match=r"RS.jsonl, line 1: missing field 'selftext'"):
        reddit_pairs(subs, comments)
