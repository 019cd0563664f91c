"""Wikipedia PMP pairs from vandalism reverts (Askell et al. 2021 App. C.1).

Input: JSON lines, one revert each: {"page_title", "before" (wikitext of the vandalised revision),
"after" (the text the revert restored), "comment" (its edit summary)}. Each differing section gives
one pair, restored > vandalised, as `PAGE TITLE: …` / `SECTION TITLE: …` / `SECTION BODY: …`.
"""

import collections
import re

from hh.data.pmp.pairs import RankedPair, join_segments
from hh.data.records import field, jsonl_records

SOURCE = "wikipedia"
FIELDS = {"page_title": str, "before": str, "after": str, "comment": str}
LEAD_TITLE = "Introduction"   # the lead section has no heading; the paper does not name it
# App. C.1 removes "reference/bibliography sections"; link lists carry no prose either.
REFERENCE_SECTIONS = {"references", "bibliography", "notes", "footnotes", "citations", "sources",
                      "notes and references", "works cited", "further reading", "external links",
                      "see also"}
# Which reverts count as "suspected vandalism" (App. C.1) is our choice: the summary says so
# (ClueBot NG and most manual reverts write "vandalism"; plain rollbacks do not).
VANDALISM_COMMENT = r"vandal"
HEADING = re.compile(r"^(={2,6})[ \t]*(.+?)[ \t]*\1[ \t]*$", re.MULTILINE)
MEDIA_LINK = re.compile(r"\[\[\s*(?:file|image|category)\s*:", re.IGNORECASE)


def split_sections(wikitext: str) -> list[tuple[str, str]]:
    """[(title, raw body)]: the lead section, then one per heading of any level (== … ==,
    === … ===, …); a subsection is its own section, its body ends at the next heading."""
    sections, start, title = [], 0, LEAD_TITLE
    for m in HEADING.finditer(wikitext):
        sections.append((title, wikitext[start:m.start()]))
        title, start = m.group(2), m.end()
    sections.append((title, wikitext[start:]))
    return sections


def _remove_nested(text: str, pattern: str) -> str:
    """Removes innermost matches until none is left, so nested {{…{{…}}…}} go entirely."""
    while True:
        text, n = re.subn(pattern, "", text, flags=re.DOTALL)
        if not n:
            return text


def _remove_media_links(text: str) -> str:
    """Drops [[File:…]], [[Image:…]] and [[Category:…]], whose captions may hold [[links]]."""
    while m := MEDIA_LINK.search(text):
        depth, i = 0, m.start()
        while i < len(text):
            if text.startswith("[[", i):
                depth, i = depth + 1, i + 2
            elif text.startswith("]]", i):
                depth, i = depth - 1, i + 2
                if not depth:
                    break
            else:
                i += 1
        text = text[:m.start()] + text[i:]
    return text


def clean_wikitext(text: str) -> str:
    """Wikitext -> the prose a reader sees (App. C.1 removes hyperlinks, citations, tables and
    image placeholders): comments, <ref> citations, templates {{…}}, tables {|…|}, galleries and
    File/Image/Category links go; [[target|label]] -> label, [[target]] -> target,
    [http://url label] -> label; bold/italic quotes and other HTML tags are stripped, keeping
    their text."""
    text = re.sub(r"<!--.*?-->", "", text, flags=re.DOTALL)
    text = re.sub(r"<ref\b[^>]*/>", "", text)
    text = re.sub(r"<ref\b[^>]*>.*?</ref\s*>", "", text, flags=re.DOTALL | re.IGNORECASE)
    text = re.sub(r"<gallery\b.*?</gallery\s*>", "", text, flags=re.DOTALL | re.IGNORECASE)
    text = _remove_nested(text, r"\{\{(?:(?!\{\{|\}\}).)*\}\}")
    text = _remove_nested(text, r"\{\|(?:(?!\{\||\|\}).)*\|\}")
    text = _remove_media_links(text)
    text = re.sub(r"\[\[[^\[\]|]*\|([^\[\]]*)\]\]", r"\1", text)
    text = re.sub(r"\[\[([^\[\]]*)\]\]", r"\1", text)
    text = re.sub(r"\[(?:https?:)?//[^\s\]]+[ \t]+([^\]]*)\]", r"\1", text)
    text = re.sub(r"\[(?:https?:)?//[^\s\]]+\]", "", text)
    text = re.sub(r"'{2,}", "", text)
    text = re.sub(r"</?[A-Za-z][^>]*>", "", text)
    text = re.sub(r"__[A-Z]+__", "", text)
    text = re.sub(r"[ \t]{2,}", " ", text)   # gaps left where markup was removed
    text = re.sub(r"[ \t]*\n[ \t]*", "\n", text)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def _keyed(sections):
    """{(title, n): body}: the n-th section with that title, so repeated headings stay apart."""
    seen, out = collections.Counter(), {}
    for title, body in sections:
        out[(title, seen[title])] = body
        seen[title] += 1
    return out


def section_pairs(page_title: str, before: str, after: str, skips) -> list[RankedPair]:
    """One pair per section whose text differs: restored (`after`) > vandalised (`before`)."""
    old, new = _keyed(split_sections(before)), _keyed(split_sections(after))
    changed = [k for k in dict.fromkeys([*new, *old]) if old.get(k) != new.get(k)]
    if not changed:
        skips["revert: no section differs"] += 1
    pairs = []
    for key in changed:
        if key not in old or key not in new:
            skips["section: added or removed by the edit"] += 1
        elif clean_wikitext(key[0]).lower() in REFERENCE_SECTIONS:
            skips["section: reference section"] += 1
        elif (better := clean_wikitext(new[key])) == (worse := clean_wikitext(old[key])):
            skips["section: no visible change after cleaning"] += 1
        else:
            title = clean_wikitext(key[0])
            pairs.append(RankedPair(
                context=join_segments([f"PAGE TITLE: {page_title}", f"SECTION TITLE: {title}"]),
                better=f"SECTION BODY: {better}", worse=f"SECTION BODY: {worse}", source=SOURCE,
                metadata={"page_title": page_title, "section_title": title}))
    return pairs


def wikipedia_pairs(path, comment_pattern: str | None = VANDALISM_COMMENT):
    """-> (ranked pairs, Counter of skip reasons). Reverts whose summary does not match
    `comment_pattern` (case-insensitive; None keeps all) are skipped and counted."""
    skips, pairs = collections.Counter(), []
    for line, record in jsonl_records(path):
        revert = {name: field(record, name, typ, path, line) for name, typ in FIELDS.items()}
        if comment_pattern and not re.search(comment_pattern, revert["comment"], re.IGNORECASE):
            skips["revert: comment does not match comment_pattern"] += 1
            continue
        found = section_pairs(revert["page_title"].strip(), revert["before"], revert["after"],
                              skips)
        for pair in found:
            pair.metadata.update(line=line, comment=revert["comment"])
        pairs.extend(found)
    return pairs, skips
