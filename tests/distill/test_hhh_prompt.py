"""The HHH prompt: the shipped file parses into a preamble and whole dialogues, the budget keeps
dialogues from the start, the tiny preset's prompt fits the tiny LM's context with the tiny
SentencePiece tokenizer, and bad files or budgets fail naming the file or the field."""

import pytest

from configs import distill as distill_config, lm as lm_config
from hh.config import ConfigError
from hh.data import sources
from hh.distill import prompt as hhh_prompt


@pytest.fixture(scope="module")
def tiny_tokenizer():
    """The tokenizer `configs/lm.py:tiny` trains (the same documents and vocabulary size)."""
    data_cfg = lm_config.get_config("tiny").data
    return sources.run_tokenizer(data_cfg, sources.lm_documents(data_cfg)[0])


def test_the_shipped_prompt_is_ours_and_well_formed():
    preamble, dialogues = hhh_prompt.read_prompt("")
    assert preamble.startswith("Below are dialogues between people and an AI assistant")
    assert len(dialogues) >= 5
    for d in dialogues:
        assert d.startswith("\n\nHuman: ") and d.count("\n\nAssistant: ") >= 1
    text = hhh_prompt.render_prompt(preamble, dialogues)
    assert "spaghetti" not in text and "Below are a series of dialogues" not in text  # not Anthropic's
    assert text.endswith("\n\n-----") and text.count("\n\n-----") == len(dialogues) + 1


@pytest.mark.parametrize("preset", ["tiny", "smoke"])
def test_the_preset_prompt_fits_the_tiny_context(tiny_tokenizer, preset):
    config = distill_config.get_config(preset)
    text, ids = hhh_prompt.load_prompt(config.distill, tiny_tokenizer, config.data.seq_len)
    assert len(ids) <= config.distill.prompt_max_tokens
    assert len(ids) + config.distill.text_len <= config.data.seq_len <= lm_config.get_config("tiny").data.seq_len
    if preset == "tiny":   # the tiny prompt keeps example dialogues, not only the preamble
        assert text.count("\n\nHuman:") >= 2 and text.count("\n\nAssistant:") >= 2
    assert tiny_tokenizer.decode(ids) == text


def test_the_budget_keeps_whole_dialogues_from_the_start(tiny_tokenizer):
    preamble, dialogues = hhh_prompt.read_prompt("")
    lengths = [len(tiny_tokenizer.encode(hhh_prompt.render_prompt(preamble, dialogues[:n])))
               for n in range(len(dialogues) + 1)]
    assert lengths == sorted(lengths)
    for n in range(len(dialogues) + 1):
        text, ids = hhh_prompt.budgeted_prompt(preamble, dialogues, tiny_tokenizer, lengths[n], "f")
        assert text == hhh_prompt.render_prompt(preamble, dialogues[:n]) and len(ids) == lengths[n]
    text, _ = hhh_prompt.budgeted_prompt(preamble, dialogues, tiny_tokenizer, lengths[2] - 1, "f")
    assert text == hhh_prompt.render_prompt(preamble, dialogues[:1])
    assert hhh_prompt.budgeted_prompt(preamble, dialogues, tiny_tokenizer, 0, "f")[1] == \
        tiny_tokenizer.encode(hhh_prompt.render_prompt(preamble, dialogues))


def test_a_preamble_over_budget_names_the_field(tiny_tokenizer):
    config = distill_config.get_config("tiny")
    config.distill.prompt_max_tokens = 5
    with pytest.raises(ConfigError, match=r"config\.distill\.prompt_max_tokens=5"):
        hhh_prompt.load_prompt(config.distill, tiny_tokenizer, config.data.seq_len)


def test_a_prompt_that_does_not_fit_names_the_fields_and_the_file(tiny_tokenizer):
    config = distill_config.get_config("tiny")
    config.distill.text_len = 250
    with pytest.raises(ConfigError, match=r"hhh_prompt\.txt.*config\.distill\.text_len=250.*"
                                          r"config\.data\.seq_len=256"):
        hhh_prompt.load_prompt(config.distill, tiny_tokenizer, config.data.seq_len)


@pytest.mark.parametrize("content,message", [
    ("A preamble.\n-----\nHuman: hello, no answer here\n", "dialogue 1 must start with 'Human:'"),
    ("A preamble.\n-----\nAssistant: hi\n\nHuman: hello\n", "dialogue 1 must start with 'Human:'"),
    ("\n-----\nHuman: hi\n\nAssistant: hello\n", "the preamble"),
])
def test_a_malformed_prompt_file_is_named(tmp_path, tiny_tokenizer, content, message):
    path = tmp_path / "my_prompt.txt"
    path.write_text(content)
    config = distill_config.get_config("tiny")
    config.distill.prompt_file = str(path)
    with pytest.raises(ConfigError, match=f"{path}.*{message}"):
        hhh_prompt.load_prompt(config.distill, tiny_tokenizer, config.data.seq_len)


def test_a_missing_prompt_file_is_named(tmp_path, tiny_tokenizer):
    config = distill_config.get_config("tiny")
    config.distill.prompt_file = str(tmp_path / "nope.txt")
    with pytest.raises(ConfigError, match=r"config\.distill\.prompt_file=.*nope\.txt"):
        hhh_prompt.load_prompt(config.distill, tiny_tokenizer, config.data.seq_len)


def test_a_user_prompt_file_is_used(tmp_path, tiny_tokenizer):
    path = tmp_path / "mine.txt"
    path.write_text("Be kind.\n-----\nHuman: hi\n\nAssistant: hello\n")
    config = distill_config.get_config("tiny")
    config.distill.prompt_file = str(path)
    text, _ = hhh_prompt.load_prompt(config.distill, tiny_tokenizer, config.data.seq_len)
    assert text == "Be kind.\n\n-----\n\nHuman: hi\n\nAssistant: hello\n\n-----"
