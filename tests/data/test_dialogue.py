"""hh.data.dialogue: byte-exact parse/render, response splitting, pair flags and the keep policy."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ml_collections import ConfigDict

from hh.data.dialogue import (ASSISTANT, HUMAN, PairSplit, Turn, keep_pair, parse_dialogue,
                              render_dialogue, resolve_policy, split_pair, split_response)

# Pieces that make near-markers likely: partial markers, extra newlines, colons, non-ASCII.
PIECES = st.sampled_from([HUMAN, ASSISTANT, "\n", "\n\n", " ", "Human", "Assistant", ":",
                          "\n\nHuman", "\n\nAssistant", "x", "é", "🙂", "\r\n", "\t"])
TEXT = st.lists(st.one_of(PIECES, st.text(max_size=5)), max_size=12).map("".join)
MARKER_TEXT = st.tuples(st.sampled_from([HUMAN, ASSISTANT]), TEXT).map("".join)
MARKER_FREE = TEXT.filter(lambda t: HUMAN not in t and ASSISTANT not in t)


def test_markers_are_the_released_ones():
    assert HUMAN == "\n\nHuman:" and ASSISTANT == "\n\nAssistant:"


def test_parse_keeps_leading_spaces_and_everything_between_markers():
    s = "\n\nHuman: Hi there\n\nAssistant: Hello!\n  \n\nHuman:\n\nAssistant: "
    assert parse_dialogue(s) == [Turn("human", " Hi there"), Turn("assistant", " Hello!\n  "),
                                 Turn("human", ""), Turn("assistant", " ")]
    assert render_dialogue(parse_dialogue(s)) == s


def test_parse_empty_transcript_has_no_turns():
    assert parse_dialogue("") == [] and render_dialogue([]) == ""


@pytest.mark.parametrize("s", ["Hi\n\nHuman: x", "no markers at all", " \n\nHuman: x"])
def test_text_before_the_first_marker_is_refused(s):
    with pytest.raises(ValueError, match="text before the first marker"):
        parse_dialogue(s)


@settings(max_examples=300, deadline=None)
@given(MARKER_TEXT)
def test_render_parse_round_trip_is_byte_exact(s):
    turns = parse_dialogue(s)
    assert render_dialogue(turns) == s
    assert all(HUMAN not in t.text and ASSISTANT not in t.text for t in turns)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["human", "assistant"]), MARKER_FREE), max_size=6))
def test_parse_render_round_trip_for_marker_free_turns(pairs):
    turns = [Turn(role, text) for role, text in pairs]
    assert parse_dialogue(render_dialogue(turns)) == turns


@settings(max_examples=200, deadline=None)
@given(TEXT, TEXT)
def test_split_response_cuts_at_the_last_assistant_marker(head, response):
    response = response.replace(ASSISTANT, "")   # the response must not hold a later marker
    transcript = head + ASSISTANT + response
    prompt, got = split_response(transcript)
    assert prompt + got == transcript
    assert prompt.endswith(ASSISTANT) and ASSISTANT not in got
    if ASSISTANT not in response:
        assert got == response


def test_split_response_without_an_assistant_turn_fails():
    with pytest.raises(ValueError, match="no '\\\\n\\\\nAssistant:' turn"):
        split_response("\n\nHuman: hello")


def test_split_pair_shared_prompt():
    p = "\n\nHuman: a\n\nAssistant: b\n\nHuman: c\n\nAssistant:"
    s = split_pair(p + " good", p + " bad")
    assert s == PairSplit(prompt=p, rejected_prompt=p, chosen=" good", rejected=" bad", num_turns=2,
                          prompts_differ=False, empty_chosen=False, empty_rejected=False,
                          identical=False)


def test_split_pair_flags_differing_prompts_empty_and_identical():
    s = split_pair("\n\nHuman: a\n\nAssistant: x\n\nHuman: b\n\nAssistant: ",
                   "\n\nHuman: a\n\nAssistant:\t")
    assert s.prompts_differ and s.empty_chosen and s.empty_rejected and not s.identical
    assert s.num_turns == 2 and s.rejected_prompt == "\n\nHuman: a\n\nAssistant:"
    assert s.prompt + s.chosen == "\n\nHuman: a\n\nAssistant: x\n\nHuman: b\n\nAssistant: "
    same = split_pair("\n\nHuman: a\n\nAssistant: y", "\n\nHuman: a\n\nAssistant: y")
    assert same.identical and not same.prompts_differ


MISMATCH = split_pair("\n\nHuman: a\n\nAssistant: x", "\n\nHuman: b\n\nAssistant: y")
EMPTY_REJECTED = split_pair("\n\nHuman: a\n\nAssistant: x", "\n\nHuman: a\n\nAssistant: ")


def test_keep_pair_default_keeps_everything():
    for split in (MISMATCH, EMPTY_REJECTED):
        assert keep_pair(split) == (True, None)
        assert keep_pair(split, {}) == (True, None)


def test_keep_pair_skips_with_the_reason():
    assert keep_pair(MISMATCH, {"on_prompt_mismatch": "skip"}) == (False, "prompts_differ")
    assert keep_pair(MISMATCH, {"on_empty_response": "skip"}) == (True, None)
    policy = ConfigDict({"on_prompt_mismatch": "keep", "on_empty_response": "skip"})
    assert keep_pair(EMPTY_REJECTED, policy) == (False, "empty_rejected")


def test_policy_typos_fail():
    with pytest.raises(ValueError, match="unknown keep-policy key 'on_empty'"):
        resolve_policy({"on_empty": "skip"})
    with pytest.raises(ValueError, match="choose 'keep' or 'skip'"):
        resolve_policy({"on_prompt_mismatch": "drop"})
    assert resolve_policy(None) == {"on_prompt_mismatch": "keep", "on_empty_response": "keep",
                                    "on_identical": "keep"}
