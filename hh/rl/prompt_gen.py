"""New RL prompts written few-shot by an LM from existing human queries (Bai et al. 2022 §4.1: 369k
model-generated prompts beside 137k human ones, each generated from "about 10 existing high-quality
human queries"). The context lists k first human turns as "\\n\\nHuman:" lines and
ends with one more marker; the model's line up to the next marker is a new query.

`python -m hh.rl.prompt_gen --policy LM_WORKDIR --n 512 --out prompts.jsonl` writes {"prompt"}
rows that `data.prompt_sources` reads as a spec ("prompts.jsonl", hh.data.sources).
"""

import dataclasses
import json

import jax
import ml_collections
import numpy as np
from absl import app, flags, logging

from hh.data.dialogue import ASSISTANT, HUMAN, parse_dialogue
from hh.data.pm_data import as_text
from hh.data.pm_sources import spec_source
from hh.data.prompt_data import encode_prompt, left_padded
from hh.data.sources import ConcatSource
from hh.trained import LoadedLM
from hh.io import atomic_write_text
from hh.models.sampling import jit_generate
from hh.rl.rollout import sampling_config


def first_queries(source, limit: int = 10000) -> list[str]:
    """The first human turn of each prompt in a comparison source (stripped, non-empty, unique)."""
    seen, out = set(), []
    for i in range(min(limit, len(source))):
        turns = parse_dialogue(as_text(source[i]["prompt"]))
        text = turns[0].text.strip() if turns and turns[0].role == "human" else ""
        if text and text not in seen:
            seen.add(text)
            out.append(text)
    return out


def few_shot_context(shots) -> str:
    """"\\n\\nHuman: q1\\n\\nHuman: q2 … \\n\\nHuman:": the model continues with a new query."""
    return "".join(f"{HUMAN} {q}" for q in shots) + HUMAN


def new_query(generated: str) -> str:
    """The generated text up to the next dialogue marker, stripped ("" if nothing usable)."""
    for marker in (HUMAN, ASSISTANT, "\n\n"):
        generated = generated.split(marker)[0]
    return generated.strip()


def as_prompt(query: str) -> str:
    """A one-turn RL prompt in the HH format, ending where the assistant's response starts."""
    return f"{HUMAN} {query}{ASSISTANT}"


def generate_prompts(lm, queries, n: int, shots: int = 10, max_new_tokens: int = 48,
                     temperature: float = 1.0, batch: int = 16, seed: int = 0,
                     max_rounds: int = 20) -> list[str]:
    """Up to n new, distinct prompts (not copies of a shot or of each other).

    lm: hh.trained.LoadedLM. Each row of a batch sees its own random `shots` queries.
    """
    if len(queries) < shots:
        raise ValueError(f"{len(queries)} existing queries, fewer than shots={shots}")
    tok = lm.tokenizer
    # the RL rollout's settings (bans, eos), stopping at either marker: a query is one line
    rollout_cfg = ml_collections.ConfigDict(dict(max_new_tokens=max_new_tokens, temperature=temperature))
    sampling = dataclasses.replace(
        sampling_config(rollout_cfg, tok, lm.model.cfg.vocab_size),
        stop_sequences=tuple(tuple(tok.encode(m)) for m in (HUMAN, ASSISTANT)))
    sample = jit_generate(lm.model.cfg, sampling)
    width = lm.seq_len - max_new_tokens
    rng, known, out = np.random.default_rng(seed), set(queries), []
    for round_ in range(max_rounds):
        contexts = [few_shot_context(rng.choice(queries, size=shots, replace=False)) for _ in range(batch)]
        padded = left_padded([encode_prompt(c, tok, width) for c in contexts], width)
        prompts = {k: padded[k] for k in ("tokens", "segment_ids", "positions")}
        samples = jax.device_get(sample(lm.params, prompts, jax.random.key(seed * 7919 + round_)))
        for row, length in zip(samples.tokens, samples.lengths):
            query = new_query(tok.decode(row[:int(length)]))
            if query and query not in known:
                known.add(query)
                out.append(as_prompt(query))
        if len(out) >= n:
            break
    return out[:n]


def write_prompts(path, prompts) -> None:
    """JSON lines {"prompt": …}, written atomically (never half a file)."""
    atomic_write_text(path, "".join(json.dumps({"prompt": p}) + "\n" for p in prompts))


def main(argv):
    del argv
    f = flags.FLAGS
    if not f["verbosity"].present:
        logging.set_verbosity(logging.WARNING)
    lm = LoadedLM(f.policy)
    source = ConcatSource(spec_source(s, "train", lm.config.data) for s in f.sources)
    prompts = generate_prompts(lm, first_queries(source), f.n, f.shots, f.max_new_tokens,
                               f.temperature, seed=f.seed)
    write_prompts(f.out, prompts)
    print(f"{len(prompts)} new prompts -> {f.out}")


if __name__ == "__main__":
    flags.DEFINE_string("policy", None, "an hh LM or distill workdir that writes the prompts")
    flags.DEFINE_list("sources", ["synthetic-helpful", "synthetic-harmless"], "existing prompts (specs)")
    flags.DEFINE_integer("n", 256, "new prompts wanted")
    flags.DEFINE_integer("shots", 10, "existing queries per context (§4.1: about 10)")
    flags.DEFINE_integer("max_new_tokens", 48, "longest generated query")
    flags.DEFINE_float("temperature", 1.0, "sampling temperature")
    flags.DEFINE_integer("seed", 0, "which shots and samples")
    flags.DEFINE_string("out", None, "the JSON-lines file to write")
    flags.mark_flags_as_required(["policy", "out"])
    app.run(main)
