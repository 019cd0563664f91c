"""StackExchange Posts.xml -> ranked pairs: the paper's score table, HTML to text, the per-question
draw, exact pair strings, skip counts and the errors for bad dumps."""

import collections
import gzip
import tracemalloc
from xml.sax.saxutils import quoteattr

import pytest

from hh.data.errors import DataError
from hh.data.pmp.pairs import binarize, to_comparison
from hh.data.pmp.stackexchange import answer_score, html_to_text, post_rows, stackexchange_pairs


def row(**attrs) -> str:
    return "  <row " + " ".join(f"{k}={quoteattr(str(v))}" for k, v in attrs.items()) + " />"


def write_posts(path, rows):
    path.write_text('<?xml version="1.0" encoding="utf-8"?>\n<posts>\n' + "\n".join(rows)
                    + "\n</posts>\n", encoding="utf-8")
    return path


def q(i, title, body, accepted=None):
    extra = {"AcceptedAnswerId": accepted} if accepted else {}
    return row(Id=i, PostTypeId=1, Score=5, Title=title, Body=body, **extra)


def a(i, parent, score, body):
    return row(Id=i, PostTypeId=2, ParentId=parent, Score=score, Body=body)


DUMP = [
    q(1, "How do I sort a list?", "<p>I have <code>xs</code> &amp; want it sorted.</p>",
      accepted=3),
    a(2, 1, 0, "<p>Write a bubble sort.</p>"),                          # score 0
    a(3, 1, 3, "<p>Use <code>sorted(xs)</code>:</p>\n<pre><code>ys = sorted(xs)\n</code></pre>"),
    q(4, "Tabs or spaces?", "<p>Which?</p>"),
    a(5, 4, 1, "<p>Tabs.</p>"), a(6, 4, 1, "<p>Spaces.</p>"),           # both score 1: tie
    q(7, "Lonely question", "<p>Anyone?</p>"), a(8, 7, 10, "<p>Only me.</p>"),
    q(9, "Unanswered", "<p>Hello?</p>"),
    a(10, 99, 4, "<p>Answer to a deleted question.</p>"),
    row(Id=11, PostTypeId=5, Body="<p>Tag wiki.</p>"),
    q(12, "Best editor?", "<p>Pick one.</p>"),
    a(13, 12, -2, "<p>Notepad.</p>"), a(14, 12, 0, "<p>Vim.</p>"), a(15, 12, 0, "<p>Emacs.</p>"),
]


@pytest.mark.parametrize("upvotes, accepted, score", [
    (0, False, 0), (1, False, 1), (2, False, 2), (3, False, 2), (3, True, 3), (0, True, 1),
    (7, False, 3), (1000, False, 10), (-1, False, -1), (-2, False, -1), (-2, True, -1)])
def test_answer_score_table(upvotes, accepted, score):
    # round(log2(1 + n)) + accepted, -1 below zero: log2(3) = 1.58 -> 2, log2(1001) = 9.97 -> 10.
    assert answer_score(upvotes, accepted) == score


@pytest.mark.parametrize("html, text", [
    ("<p>Hello   <b>world</b> &amp; you.</p>", "Hello world & you."),
    ("<p>One.</p>\n\n<p>Two.</p>", "One.\n\nTwo."),
    ("<ul>\n<li>a</li>\n<li>b <i>c</i></li>\n</ul>", "- a\n- b c"),
    ("<p>x<br/>y <img src='i.png' alt='pic'/> z</p>", "x\ny z"),
    ("<pre><code>def f():\n    return 1\n\n\n# end\n</code></pre>",
     "def f():\n    return 1\n\n\n# end"),
    ("<p>Run <code>ls  -l</code> &lt;dir&gt;</p><blockquote><p>quoted</p></blockquote>",
     "Run ls -l <dir>\n\nquoted"),
    ("", ""),
])
def test_html_to_text(html, text):
    assert html_to_text(html) == text


def test_pairs_are_exact_and_skips_counted(tmp_path):
    pairs, skips = stackexchange_pairs(write_posts(tmp_path / "Posts.xml", DUMP), seed=0,
                                       site="cs")
    assert len(pairs) == 2
    first = pairs[0]
    assert first.context == "Question: How do I sort a list?\n\nI have xs & want it sorted.\n\n"
    assert first.better == "Answer: Use sorted(xs):\n\nys = sorted(xs)"   # 3 upvotes + accepted
    assert first.worse == "Answer: Write a bubble sort."
    assert first.metadata == {"site": "cs", "question_id": 1, "better_id": 3, "worse_id": 2,
                              "better_score": 3, "worse_score": 0}
    # Question 12: Vim and Emacs both score 0, Notepad -1: the worse side is always Notepad.
    assert pairs[1].worse == "Answer: Notepad." and pairs[1].metadata["worse_score"] == -1
    assert pairs[1].better in ("Answer: Vim.", "Answer: Emacs.")
    assert skips == collections.Counter({
        "question: fewer than 2 answers": 2,                    # 7 (one answer), 9 (none)
        "question: no two answers with distinct scores": 1,     # 4
        "answer: its question is not in the dump": 1,           # 10
        "row: post type is neither question nor answer": 1})   # 11


@pytest.mark.parametrize("name", ["Posts.xml.gz", "Posts.xml"])
def test_gzipped_dump_is_read_by_its_magic_bytes(tmp_path, name):
    plain = write_posts(tmp_path / "plain.xml", DUMP)
    zipped = tmp_path / name
    zipped.write_bytes(gzip.compress(plain.read_bytes()))
    assert stackexchange_pairs(zipped, seed=0, site="cs") == stackexchange_pairs(plain, seed=0, site="cs")


def test_comparisons_and_binarized_forms(tmp_path):
    pairs, _ = stackexchange_pairs(write_posts(tmp_path / "Posts.xml", DUMP))
    ranked = [to_comparison(p) for p in pairs]
    assert ranked[0]["prompt"] + ranked[0]["chosen"] == (
        "Question: How do I sort a list?\n\nI have xs & want it sorted.\n\n"
        "Answer: Use sorted(xs):\n\nys = sorted(xs)")
    assert {c["tranche"] for c in ranked} == {"pmp-stackexchange"}
    binary = list(binarize(pairs))
    assert len(binary) == 2 * len(pairs)
    assert binary[1] == {"prompt": ranked[0]["prompt"] + "Answer: Write a bubble sort.\n\n",
                         "chosen": "BAD", "rejected": "GOOD", "num_turns": 1,
                         "tranche": "pmp-stackexchange"}


def test_draw_is_deterministic_and_independent_of_row_order(tmp_path):
    answers = [a(100 + i, 50, s, f"<p>answer {i}</p>") for i, s in enumerate([0, 1, 3, 7, 15, 31])]
    rows = [q(50, "Many answers", "<p>Q</p>")] + answers
    forward = write_posts(tmp_path / "f.xml", rows)
    backward = write_posts(tmp_path / "b.xml", rows[:1] + rows[:0:-1])

    def picks(path, seed):
        return [(p.better, p.worse) for p in stackexchange_pairs(path, seed=seed)[0]]

    assert picks(forward, 0) == picks(forward, 0) == picks(backward, 0)
    assert len({tuple(picks(forward, seed)) for seed in range(20)}) > 1   # the seed matters


def test_pair_with_empty_text_is_skipped_and_counted(tmp_path):
    rows = [q(1, "Q", "<p>?</p>"), a(2, 1, 5, "<p><img src='chart.png'/></p>"),
            a(3, 1, 0, "<p>No.</p>")]
    pairs, skips = stackexchange_pairs(write_posts(tmp_path / "Posts.xml", rows))
    assert pairs == [] and skips == {"pair: empty text after HTML conversion": 1}


def test_post_rows_reports_lines_and_reads_every_row(tmp_path):
    path = write_posts(tmp_path / "Posts.xml", DUMP)
    lines = [line for line, _ in post_rows(path)]
    assert lines == list(range(3, 3 + len(DUMP)))   # line 1 declaration, line 2 <posts>


def test_post_rows_memory_does_not_grow_with_the_file(tmp_path):
    def peak(n):
        body = "<p>" + "word " * 40 + "</p>"
        path = write_posts(tmp_path / f"{n}.xml", [a(i, 1, 0, body) for i in range(2, n + 2)])
        tracemalloc.start()
        for _ in post_rows(path):
            pass
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return top

    small, large = peak(500), peak(5000)   # 10x the rows (about 1.4 MB of XML)
    assert large < 1.5 * small + 50_000, (small, large)


def bad_dump(tmp_path, content: bytes):
    path = tmp_path / "Posts.xml"
    path.write_bytes(content)
    return path


@pytest.mark.parametrize("content, message", [
    (b"", r"Posts.xml: empty file"),
    (b"<posts>\n<row Id=\"1\" PostTypeId=\"1\" Title=\"t\" Body=\"b\" />\n<row Id=\"2\"\n",
     r"Posts.xml, line 3: malformed XML: unclosed token"),
    (b"<posts>\n<row Id=\"1\" PostTypeId=\"1\" Title=\"t\" Body=\"b\" />\n",
     r"Posts.xml, line 3: malformed XML: no element found"),
    (b"<posts>\n<row Id=\"1\" PostTypeId=\"1\" Title=\"caf\xe9\" Body=\"b\" />\n</posts>\n",
     r"Posts.xml, line 2: invalid UTF-8"),
    (b"<posts>\n<row Id=\"1\" PostTypeId=\"1\" Title=\"t\" Body=\"b\" />\n"
     b"<row Id=\"2\" PostTypeId=\"2\" ParentId=\"1\" Body=\"b\" />\n</posts>\n",
     r"Posts.xml, line 3: row Id=2: missing attribute 'Score'"),
    (b"<posts>\n<row Id=\"2\" PostTypeId=\"2\" ParentId=\"1\" Score=\"many\" Body=\"b\" />\n"
     b"</posts>\n", r"Posts.xml, line 2: row Id=2: attribute 'Score' is not an integer"),
    (b"<posts>\n<row PostTypeId=\"1\" Title=\"t\" Body=\"b\" />\n</posts>\n",
     r"Posts.xml, line 2: row Id=\?: missing attribute 'Id'"),
    (b"<posts>\n</posts>\n", r"Posts.xml: no <row> elements"),
])
def test_bad_dumps_raise_data_error_naming_file_and_line(tmp_path, content, message):
    with pytest.raises(DataError, match=message):
        stackexchange_pairs(bad_dump(tmp_path, content))
