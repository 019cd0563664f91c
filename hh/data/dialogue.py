"""The HH dialogue format: "\\n\\nHuman: …\\n\\nAssistant: …" transcripts, turns and pairs.

Parsing and rendering are byte-exact inverses; a pair splits into (prompt, response) by the last
"\\n\\nAssistant:" of each transcript (docs/paper-notes.md §3). Everything downstream (TFDS builders, PM
and RL batches) sees dialogues only through these functions.
"""

import dataclasses
import re
from collections.abc import Mapping

HUMAN = "\n\nHuman:"
ASSISTANT = "\n\nAssistant:"
ROLES = {HUMAN: "human", ASSISTANT: "assistant"}
MARKERS = {role: marker for marker, role in ROLES.items()}
_MARKER_RE = re.compile("|".join(re.escape(m) for m in ROLES))


@dataclasses.dataclass(frozen=True)
class Turn:
    role: str   # "human" or "assistant"
    text: str   # everything after the marker up to the next one, leading space included


def parse_dialogue(transcript: str) -> list[Turn]:
    """Turns of a transcript; "" has none. Text before the first marker is a ValueError.

    We refuse a preamble rather than invent a role for it: every transcript in hh-rlhf starts with
    "\\n\\nHuman:", so one that does not is a different format, not a dialogue to guess at.
    """
    matches = list(_MARKER_RE.finditer(transcript))
    if transcript and (not matches or matches[0].start() != 0):
        preamble = transcript[:matches[0].start()] if matches else transcript
        raise ValueError(f"transcript does not start with {HUMAN!r} or {ASSISTANT!r}: "
                         f"text before the first marker: {preamble[:60]!r}")
    ends = [m.start() for m in matches[1:]] + [len(transcript)]
    return [Turn(ROLES[m.group()], transcript[m.end():end]) for m, end in zip(matches, ends)]


def render_dialogue(turns) -> str:
    """The transcript of `turns`: render_dialogue(parse_dialogue(s)) == s."""
    return "".join(MARKERS[t.role] + t.text for t in turns)


def split_response(transcript: str) -> tuple[str, str]:
    """(prompt, response) at the last "\\n\\nAssistant:"; the prompt ends with that marker."""
    cut = transcript.rfind(ASSISTANT)
    if cut < 0:
        raise ValueError(f"transcript has no {ASSISTANT!r} turn to split off: {transcript[:60]!r}")
    cut += len(ASSISTANT)
    return transcript[:cut], transcript[cut:]


@dataclasses.dataclass(frozen=True)
class PairSplit:
    """A preference pair: prompt + chosen and rejected_prompt + rejected are the two transcripts."""
    prompt: str            # from the chosen transcript
    rejected_prompt: str   # equal to prompt except in a few real pairs (5 in harmless-base/test)
    chosen: str            # the chosen response, leading space included
    rejected: str
    num_turns: int         # human turns in the prompt
    prompts_differ: bool
    empty_chosen: bool     # response is whitespace only (" " in 4 harmless-base/test pairs)
    empty_rejected: bool
    identical: bool        # chosen and rejected transcripts are the same string


def split_pair(chosen_transcript: str, rejected_transcript: str) -> PairSplit:
    # Each transcript is split on its own last marker: the prompts are not always the same.
    prompt, chosen = split_response(chosen_transcript)
    rejected_prompt, rejected = split_response(rejected_transcript)
    return PairSplit(
        prompt=prompt, rejected_prompt=rejected_prompt, chosen=chosen, rejected=rejected,
        num_turns=prompt.count(HUMAN),
        prompts_differ=prompt != rejected_prompt,
        empty_chosen=not chosen.strip(),
        empty_rejected=not rejected.strip(),
        identical=chosen_transcript == rejected_transcript)


# Policy key -> the flags it governs, in the order a skip reason is reported.
POLICY_FLAGS = {
    "on_prompt_mismatch": ("prompts_differ",),
    "on_empty_response": ("empty_chosen", "empty_rejected"),
    "on_identical": ("identical",),
}
DEFAULT_POLICY = {key: "keep" for key in POLICY_FLAGS}


def resolve_policy(policy: Mapping | None) -> dict:
    """The full policy: DEFAULT_POLICY updated by `policy` (a dict or ConfigDict); typos fail."""
    resolved = dict(DEFAULT_POLICY)
    for key in (policy or {}).keys():
        if key not in POLICY_FLAGS:
            raise ValueError(f"unknown keep-policy key {key!r}: "
                             f"known keys are {sorted(POLICY_FLAGS)}")
        if policy[key] not in ("keep", "skip"):
            raise ValueError(f"keep policy {key}={policy[key]!r}: choose 'keep' or 'skip'")
        resolved[key] = policy[key]
    return resolved


def keep_pair(split: PairSplit, policy: Mapping | None = None) -> tuple[bool, str | None]:
    """(keep, reason): reason is the first flag that a "skip" in `policy` applies to, else None."""
    for key, action in resolve_policy(policy).items():
        if action == "skip":
            for flag in POLICY_FLAGS[key]:
                if getattr(split, flag):
                    return False, flag
    return True, None
