"""Reddit PMP pairs from Pushshift-style JSON lines (Askell et al. 2021 App. C.1).

Two comment threads that share a submission and every comment but the last (siblings under one
parent) make a pair; the higher-scored last comment is better. Usernames become "User A", "User B",
… per pair. Output: `SUBMISSION by User A: …` / `COMMENT by User B: …` segments.
"""

import collections
import html
import random
import re

from hh.data.errors import DataError
from hh.data.pmp.pairs import RankedPair, join_segments, sample_distinct_pair
from hh.data.records import field, jsonl_records

SOURCE = "reddit"
# App. C.1 whitelists 50 subreddits; these nine, named in it, are the default (`subreddits=` for more).
# AmItheAsshole is excluded by the paper: do not add it.
DEFAULT_SUBREDDITS = ("tifu", "explainlikeimfive", "WritingPrompts", "changemyview", "LifeProTips",
                      "todayilearned", "science", "askscience", "programming")
SUBMISSION_FIELDS = {"id": str, "author": str, "title": str, "selftext": str, "subreddit": str}
COMMENT_FIELDS = {"id": str, "parent_id": str, "link_id": str, "author": str, "body": str,
                  "score": int, "subreddit": str}
GONE = ("[deleted]", "[removed]")
MENTION = re.compile(r"(?<![\w/])/?u/([A-Za-z0-9_-]{3,20})")


def drop_reason(author: str, text: str):
    """Why a post is unusable, or None. App. C.1 removes deleted comments and bots; a bot is
    AutoModerator or any name ending in "bot" (a few humans named "…bot" go too)."""
    if author in GONE or text.strip() in GONE:
        return "deleted or removed"
    if author == "AutoModerator" or author.lower().endswith("bot"):
        return "bot author"
    if not text.strip():
        return "empty text"
    return None


def alias(index: int) -> str:
    """0 -> "User A", 25 -> "User Z", 26 -> "User AA" (spreadsheet letters)."""
    letters = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        letters = chr(ord("A") + rest) + letters
    return f"User {letters}"


def alias_table(authors, texts) -> dict:
    """Lower-cased username -> alias, by first appearance: the authors in thread order, then
    users mentioned as u/name in the texts. Reddit names are case-insensitive."""
    names = [a.lower() for a in authors]
    names += [m.group(1).lower() for t in texts for m in MENTION.finditer(t)]
    return {name: alias(i) for i, name in enumerate(dict.fromkeys(names))}


def anonymize(text: str, table: dict) -> str:
    return MENTION.sub(lambda m: table[m.group(1).lower()], text)


def read_posts(path, fields: dict, subreddits: set, kind: str, skips):
    """{id: record} of the whitelisted, usable posts in file order; skips counted under `kind`."""
    kept, dropped = {}, set()
    for line, record in jsonl_records(path):
        post = {name: field(record, name, typ, path, line) for name, typ in fields.items()}
        for prefix_field, prefixes in (("parent_id", ("t1_", "t3_")), ("link_id", ("t3_",))):
            if prefix_field in post and not post[prefix_field].startswith(prefixes):
                raise DataError(path, f"field {prefix_field!r} must start with "
                                      f"{' or '.join(prefixes)}: {post[prefix_field]!r:.40}", line)
        if post["subreddit"].lower() not in subreddits:
            skips[f"{kind}: subreddit not in whitelist"] += 1
            continue
        for key in ("title", "selftext", "body"):
            if key in post:
                post[key] = html.unescape(post[key]).strip()   # Pushshift escapes &, <, >
        # A link post has no selftext: its title is the whole submission.
        text = post["body"] if "body" in post else post["selftext"] or post["title"]
        if reason := drop_reason(post["author"], text):
            skips[f"{kind}: {reason}"] += 1
            dropped.add(post["id"])
            continue
        kept[post["id"]] = post
    return kept, dropped


def usable_comments(comments_path, comments, submissions, dropped_submissions, dropped_comments,
                    skips):
    """The comments whose submission and every ancestor were kept; the others are counted.
    A comment inherits the reason of its first unusable ancestor."""
    status = {}   # comment id -> None (usable) or a skip reason

    def resolve(comment_id):   # iterative: real threads are thousands of comments deep
        chain, reason = [], None
        while comment_id not in status:
            if comment_id in chain:
                raise DataError(comments_path, f"comment {comment_id!r} is its own ancestor")
            chain.append(comment_id)
            comment = comments[comment_id]
            submission = comment["link_id"][3:]
            if submission not in submissions:
                reason = ("below a dropped submission" if submission in dropped_submissions
                          else "submission not in dump")
                break
            if comment["parent_id"].startswith("t3_"):
                break
            parent = comment["parent_id"][3:]
            if parent not in comments:
                reason = ("below a dropped comment" if parent in dropped_comments
                          else "ancestor comment not in dump")
                break
            comment_id = parent
        else:
            reason = status[comment_id]
        status.update(dict.fromkeys(chain, reason))
        return reason

    usable = {}
    for comment_id in comments:
        reason = resolve(comment_id)
        if reason:
            skips[f"comment: {reason}"] += 1
        else:
            usable[comment_id] = comments[comment_id]
    return usable


def thread(comment, comments, submissions):
    """[submission, top-level comment, …, comment] (root first)."""
    chain = [comment]
    while chain[-1]["parent_id"].startswith("t1_"):
        chain.append(comments[chain[-1]["parent_id"][3:]])
    return [submissions[comment["link_id"][3:]]] + chain[::-1]


def render_pair(posts, better, worse) -> RankedPair:
    """`posts` = [submission, comments…] shared by both threads; aliases span the whole pair."""
    everything = posts + [better, worse]
    texts = [p.get("title", "") + "\n" + p.get("selftext", p.get("body", "")) for p in everything]
    table = alias_table([p["author"] for p in everything], texts)

    def segment(post):
        name = table[post["author"].lower()]
        if "title" in post:
            body = anonymize(post["title"], table) + (
                f"\n\n{anonymize(post['selftext'], table)}" if post["selftext"] else "")
            return f"SUBMISSION by {name}: {body}"
        return f"COMMENT by {name}: {anonymize(post['body'], table)}"

    return RankedPair(
        context=join_segments(segment(p) for p in posts), better=segment(better),
        worse=segment(worse), source=SOURCE,
        metadata={"subreddit": posts[0]["subreddit"], "submission_id": posts[0]["id"],
                  "better_id": better["id"], "worse_id": worse["id"],
                  "better_score": better["score"], "worse_score": worse["score"]})


def reddit_pairs(submissions_path, comments_path, subreddits=DEFAULT_SUBREDDITS, seed: int = 0):
    """-> (ranked pairs, Counter of skip reasons).

    One pair per group of sibling comments (same parent), drawn uniformly among the sibling pairs
    with distinct scores, seeded by (seed, parent id); a group whose scores all tie is skipped.
    Both files are held in memory after the whitelist filter: filter a big dump by subreddit first.
    """
    skips, whitelist = collections.Counter(), {s.lower() for s in subreddits}
    submissions, dropped_subs = read_posts(submissions_path, SUBMISSION_FIELDS, whitelist,
                                           "submission", skips)
    comments, dropped_comments = read_posts(comments_path, COMMENT_FIELDS, whitelist,
                                            "comment", skips)
    usable = usable_comments(comments_path, comments, submissions, dropped_subs,
                             dropped_comments, skips)
    siblings = collections.defaultdict(list)
    for comment in usable.values():
        siblings[comment["parent_id"]].append(comment)
    pairs = []
    for parent, group in siblings.items():
        if len(group) < 2:
            skips["sibling group: only one comment"] += 1
            continue
        group.sort(key=lambda c: (len(c["id"]), c["id"]))   # base-36 order: file order is moot
        rng = random.Random(f"{seed}:{parent}")
        chosen = sample_distinct_pair(group, [c["score"] for c in group], rng)
        if chosen is None:
            skips["sibling group: all scores tied"] += 1
            continue
        better, worse = chosen
        pairs.append(render_pair(thread(better, usable, submissions)[:-1], better, worse))
    return pairs, skips
