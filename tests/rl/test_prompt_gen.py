"""Few-shot prompt generation: the context and parsing by hand, generated prompts in the HH format
(distinct, not copies of a shot, seeded), and the JSON-lines file read back as a prompt source."""

import pytest

from hh.data.pm_sources import spec_source
from hh.data.prompt_data import prompt_batches
from hh.data.sources import comparison_source
from hh.trained import LoadedLM
from hh.rl.prompt_gen import (as_prompt, few_shot_context, first_queries, generate_prompts, new_query,
                              write_prompts)


def test_context_and_parsing_by_hand():
    assert few_shot_context(["Hi?", "How do I bake?"]) == "\n\nHuman: Hi?\n\nHuman: How do I bake?\n\nHuman:"
    assert new_query(" What is 2+2?\n\nHuman: again") == "What is 2+2?"
    assert new_query(" Tell me a joke\n\nAssistant: no") == "Tell me a joke"
    assert new_query("  \n\nHuman:") == ""
    assert as_prompt("Hi?") == "\n\nHuman: Hi?\n\nAssistant:"


def test_first_queries_are_unique_first_turns():
    rows = [{"prompt": "\n\nHuman: a\n\nAssistant: b\n\nHuman: c\n\nAssistant:"},
            {"prompt": "\n\nHuman:  a \n\nAssistant:"}, {"prompt": "\n\nHuman: d\n\nAssistant:"}]
    assert first_queries(rows) == ["a", "d"]


@pytest.mark.slow
def test_generated_prompts_round_trip_as_a_source(pm_chain, tmp_path):
    lm = LoadedLM(pm_chain["lm"])
    queries = first_queries(spec_source("synthetic-helpful", "train", lm.config.data), limit=400)
    prompts = generate_prompts(lm, queries, n=6, shots=3, max_new_tokens=16, batch=8, seed=1)
    assert prompts == generate_prompts(lm, queries, n=6, shots=3, max_new_tokens=16, batch=8, seed=1)
    assert 0 < len(prompts) <= 6 and len(set(prompts)) == len(prompts)
    for p in prompts:
        assert p.startswith("\n\nHuman: ") and p.endswith("\n\nAssistant:")
        assert new_query(p[len("\n\nHuman:"):]) not in queries
    path = tmp_path / "new.jsonl"
    write_prompts(path, prompts)
    source = comparison_source(str(path), "train", lm.config.data)
    assert [row["prompt"] for row in source] == prompts
    batch = next(prompt_batches(source, lm.tokenizer, 40, 4, seed=0))
    assert batch["tokens"].shape == (4, 40)


def test_bad_prompt_file_names_the_line(tmp_path, pm_chain):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"prompt": "\\n\\nHuman: ok\\n\\nAssistant:"}\n{"text": 1}\n')
    with pytest.raises(ValueError, match="bad.jsonl, line 2"):
        comparison_source(str(path), "train", LoadedLM(pm_chain["lm"]).config.data)
