"""StackExchange PMP pairs from a data-dump `Posts.xml` (Askell et al. 2021 App. C.1).

Two streaming passes, so a multi-GB dump runs with the XML tree cleared row by row: the first keeps
only ids, scores and accepted answers and picks one pair of answers with distinct scores per
question; the second fetches the text of just those posts. Output: `Question: …` / `Answer: …`.
"""

import collections
import math
import random
import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser

from hh.data.errors import DataError
from hh.data.pmp.pairs import RankedPair, join_segments, sample_distinct_pair
from hh.data.records import utf8_lines

SOURCE = "stackexchange"
QUESTION, ANSWER = "1", "2"   # PostTypeId values in the dump; others are wiki, tag-wiki, …


def answer_score(upvotes: int, accepted: bool) -> int:
    """Askell et al. 2021 App. C.1: round(log2(1 + upvotes)), +1 if the asker accepted it; -1 if
    upvotes < 0. The dump's `Score` (up minus down votes) is the "upvotes". A negative answer
    scores -1 even when accepted: the paper gives -1 for negative upvotes without exception.
    log2(1 + n) is never exactly k + 0.5 for an integer n, so rounding has no ties to break."""
    if upvotes < 0:
        return -1
    return round(math.log2(1 + upvotes)) + int(accepted)


class _HTMLText(HTMLParser):
    """Post HTML -> plain text. Paragraph-like blocks become blank-line breaks, <li> a "- " line,
    <br> and table rows a line break; whitespace collapses as a browser would except inside <pre>,
    which is kept verbatim (code). Inline markup keeps its text; images and their alt text go."""
    BLOCKS = {"p", "div", "blockquote", "ul", "ol", "table", "hr", "h1", "h2", "h3", "h4", "h5",
              "h6"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.parts, self.pre, self.newlines = [], 0, 0

    def _emit(self, text):
        if text:
            self.parts.append(text)
            stripped = text.rstrip("\n")
            self.newlines = len(text) - len(stripped) + (self.newlines if not stripped else 0)

    def _break(self, n):
        if self.parts and not self.pre and self.parts[-1].endswith(" "):
            self.parts[-1] = self.parts[-1].rstrip(" ")
        if self.parts and self.newlines < n:
            self._emit("\n" * (n - self.newlines))

    def handle_starttag(self, tag, attrs):
        if tag in self.BLOCKS or tag == "pre":
            self._break(2)
        elif tag in ("br", "tr", "li"):
            self._break(1)
        if tag == "li":
            self._emit("- ")
        self.pre += tag == "pre"

    def handle_endtag(self, tag):
        if tag == "pre":
            self.pre = max(0, self.pre - 1)
        if tag in self.BLOCKS or tag == "pre":
            self._break(2)
        elif tag == "li":
            self._break(1)

    def handle_data(self, data):
        if self.pre:
            self._emit(data)
            return
        text = re.sub(r"\s+", " ", data)
        if self.newlines or not self.parts or self.parts[-1].endswith(" "):
            text = text.lstrip(" ")
        self._emit(text)

    def text(self) -> str:
        return "".join(self.parts).strip("\n").rstrip()


def html_to_text(html: str) -> str:
    parser = _HTMLText()
    parser.feed(html)
    parser.close()
    return parser.text()


def post_rows(path):
    """(line, attributes) of each <row> in file order. Rows are cleared once read and the root
    is emptied, so memory does not grow with the file; rows are one per line in the dumps."""
    parser, root, rows = ET.XMLPullParser(events=("start", "end")), None, 0
    try:
        for lineno, text in utf8_lines(path):
            parser.feed(text)
            for event, elem in parser.read_events():
                if root is None:
                    root = elem
                if event == "end" and elem.tag == "row":
                    rows += 1
                    yield lineno, dict(elem.attrib)
                    root.clear()
        parser.close()
    except ET.ParseError as e:
        raise DataError(path, f"malformed XML: {e}", e.position[0]) from None
    if not rows:
        raise DataError(path, "no <row> elements: not a StackExchange Posts.xml")


def _attr(row, name, path, line, integer=False):
    where = f"row Id={row.get('Id', '?')}"
    if name not in row:
        raise DataError(path, f"{where}: missing attribute {name!r}", line)
    if integer:
        try:
            return int(row[name])
        except ValueError:
            raise DataError(path, f"{where}: attribute {name!r} is not an integer: "
                                  f"{row[name]!r:.40}", line) from None
    return row[name]


def scan_posts(path, skips):
    """Pass 1 -> (accepted answer id per question id, [(answer id, upvotes)] per question id).
    Also validates every row, so pass 2 cannot fail."""
    accepted, answers = {}, collections.defaultdict(list)
    for line, row in post_rows(path):
        post_id = _attr(row, "Id", path, line, integer=True)
        kind = _attr(row, "PostTypeId", path, line)
        if kind == QUESTION:
            _attr(row, "Title", path, line), _attr(row, "Body", path, line)
            accepted[post_id] = (_attr(row, "AcceptedAnswerId", path, line, integer=True)
                                 if row.get("AcceptedAnswerId") else None)
        elif kind == ANSWER:
            parent = _attr(row, "ParentId", path, line, integer=True)
            upvotes = _attr(row, "Score", path, line, integer=True)
            _attr(row, "Body", path, line)
            answers[parent].append((post_id, upvotes))
        else:
            skips["row: post type is neither question nor answer"] += 1
    return accepted, answers


def select_answer_pairs(accepted, answers, seed: int, skips):
    """[(question id, (better id, score), (worse id, score))], one per question, in id order.
    The draw is seeded by (seed, question id), so it does not depend on the file's order."""
    for orphan in answers.keys() - accepted.keys():
        skips["answer: its question is not in the dump"] += len(answers[orphan])
    selected = []
    for question_id in sorted(accepted):
        posts = sorted(answers.get(question_id, []))   # by answer id: the draw ignores row order
        if len(posts) < 2:
            skips["question: fewer than 2 answers"] += 1
            continue
        scored = [(aid, answer_score(up, aid == accepted[question_id])) for aid, up in posts]
        rng = random.Random(f"{seed}:{question_id}")
        pair = sample_distinct_pair(scored, [s for _, s in scored], rng)
        if pair is None:
            skips["question: no two answers with distinct scores"] += 1
            continue
        selected.append((question_id, *pair))
    return selected


def post_texts(path, wanted: set) -> dict:
    """Pass 2: post id -> (title, plain-text body) for the posts in `wanted`."""
    texts = {}
    for _, row in post_rows(path):
        post_id = int(row["Id"])
        if post_id in wanted:
            texts[post_id] = (row.get("Title", ""), html_to_text(row["Body"]))
    return texts


def stackexchange_pairs(path, seed: int = 0, site: str = ""):
    """-> (ranked pairs, Counter of skip reasons) for one site's Posts.xml.

    Context: "Question: <title>\\n\\n<body>\\n\\n"; sides "Answer: <body>". One pair per question
    (App. C.1 "sample 2 answers with distinct scores"); a pair whose text is empty is skipped.
    """
    skips = collections.Counter()
    selected = select_answer_pairs(*scan_posts(path, skips), seed, skips)
    wanted = {i for q, (b, _), (w, _) in selected for i in (q, b, w)}
    texts = post_texts(path, wanted)
    pairs = []
    for question_id, (better_id, better_score), (worse_id, worse_score) in selected:
        title, body = texts[question_id]
        better, worse = texts[better_id][1], texts[worse_id][1]
        if not better or not worse or not (title or body):
            skips["pair: empty text after HTML conversion"] += 1
            continue
        question = f"Question: {title.strip()}" + (f"\n\n{body}" if body else "")
        pairs.append(RankedPair(
            context=join_segments([question]), better=f"Answer: {better}",
            worse=f"Answer: {worse}", source=SOURCE,
            metadata={"site": site, "question_id": question_id, "better_id": better_id,
                      "worse_id": worse_id, "better_score": better_score,
                      "worse_score": worse_score}))
    return pairs, skips
