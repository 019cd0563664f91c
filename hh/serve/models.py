"""The models behind the comparison interface (Bai et al. 2022 §2.2, App. D): deployed LMs, each
sampled with the KV-cache sampler (hh.models.sampling), and the pool that picks which two answer.

A deployment is "NAME=WORKDIR[@K][#STEP]": an hh LM / distill / PPO workdir, optionally best of K
samples by the serving config's reward model (rejection sampling, §2.3) and a checkpoint step (an
earlier PPO snapshot). Every call left-pads its contexts to one fixed prompt length (the start of a
long conversation is cut, its end kept) and a fixed number of rows, so each model compiles once.
Responses stop at the next "\\n\\nHuman:" marker or EOS (hh.rl.rollout.sampling_config).
"""

import dataclasses
import random
import time

import jax
import ml_collections
import numpy as np

from hh.config import ConfigError
from hh.data.dialogue import ASSISTANT, HUMAN
from hh.data.prompt_data import encode_prompt, left_padded
from hh.data.sources import same_tokenizer
from hh.trained import LoadedLM, LoadedPM
from hh.models.sampling import generate
from hh.rl.best_of import _jitted_best_of
from hh.rl.rollout import sampling_config
from hh.serve.store import Candidate

PAIRINGS = ("same", "given", "random")
_jitted_generate = jax.jit(generate, static_argnames=("model_cfg", "sampling", "samples_per_prompt"))


@dataclasses.dataclass(frozen=True)
class DeploymentSpec:
    name: str
    workdir: str
    k: int = 1
    step: int | None = None


def parse_deployment(text: str) -> DeploymentSpec:
    """"NAME=WORKDIR[@K][#STEP]" -> DeploymentSpec; errors say which part is wrong."""
    name, eq, rest = text.partition("=")
    if not eq or not name.strip() or not rest:
        raise ConfigError(f"deployment {text!r}: use NAME=WORKDIR[@K][#STEP]")
    step = None
    if "#" in rest:
        rest, _, step_text = rest.rpartition("#")
        if not step_text.isdigit():
            raise ConfigError(f"deployment {text!r}: STEP after '#' must be a checkpoint step")
        step = int(step_text)
    k = 1
    if "@" in rest:
        rest, _, k_text = rest.rpartition("@")
        if not k_text.isdigit() or int(k_text) < 1:
            raise ConfigError(f"deployment {text!r}: K after '@' must be a positive integer")
        k = int(k_text)
    return DeploymentSpec(name.strip(), rest, k, step)


def response_text(tokenizer, tokens, content_length: int) -> str:
    """A sampled response as dialogue text: its content (stop marker / EOS stripped) with the one
    leading space that follows "Assistant:" in the hh-rlhf format. A response is one turn: text
    after a turn marker the sampler did not stop at (an "\n\nAssistant:") is cut, or the stored
    transcript would gain a turn nobody wrote."""
    text = tokenizer.decode(np.asarray(tokens[:content_length]).tolist())
    for marker in (HUMAN, ASSISTANT):
        text = text.split(marker)[0]
    return " " + text.strip()


class DeployedModel:
    """One deployed LM: `sample(contexts, seed)` -> one Candidate per context, in one call per
    `rows` contexts. lm: hh.trained.LoadedLM; pm: LoadedPM (needed when k > 1)."""

    def __init__(self, spec: DeploymentSpec, lm, pm=None, *, max_new_tokens: int, temperature: float = 1.0,
                 rows: int = 2):
        if spec.k > 1 and pm is None:
            raise ConfigError(f"deployment {spec.name}: best of {spec.k} needs config.reward_model")
        if pm is not None and spec.k > 1 and not same_tokenizer(lm.tokenizer, pm.tokenizer):
            raise ConfigError(f"deployment {spec.name}: the reward model reads another tokenizer")
        if max_new_tokens >= lm.seq_len:
            raise ConfigError(f"config.max_new_tokens={max_new_tokens} leaves no room for a context in "
                              f"{spec.name}'s {lm.seq_len}-token window")
        self.spec, self.lm, self.pm, self.rows = spec, lm, pm, rows
        self.tokenizer = lm.tokenizer
        self.max_prompt_len = lm.seq_len - max_new_tokens
        rollout_cfg = ml_collections.ConfigDict(dict(max_new_tokens=max_new_tokens, temperature=temperature))
        self.sampling = sampling_config(rollout_cfg, lm.tokenizer, lm.model.cfg.vocab_size)
        self.settings = {"workdir": str(lm.workdir), "step": int(lm.step), "k": spec.k,
                         "temperature": temperature, "max_new_tokens": max_new_tokens,
                         "max_prompt_tokens": self.max_prompt_len}

    @property
    def name(self) -> str:
        return self.spec.name

    def _call(self, prompts, rng):
        if self.spec.k == 1:
            return _jitted_generate(self.lm.params, self.lm.model.cfg, prompts, rng, self.sampling)
        out = _jitted_best_of(self.lm.params, self.pm.params, prompts, rng, model_cfg=self.lm.model.cfg,
                              pm_model=self.pm.model, sampling=self.sampling, k=self.spec.k)
        return out["samples"]

    def sample(self, contexts: list[str], seed: int) -> list[Candidate]:
        """One response per context (contexts end with "\\n\\nAssistant:"), `rows` per call with the
        key of (seed, call); each Candidate records the seed and its row in the call."""
        out = []
        for call, start in enumerate(range(0, len(contexts), self.rows)):
            chunk = contexts[start:start + self.rows]
            ids = [encode_prompt(c, self.tokenizer, self.max_prompt_len) for c in chunk]
            ids += [ids[0]] * (self.rows - len(ids))      # fixed rows: one compile
            padded = left_padded(ids, self.max_prompt_len)
            prompts = {k: padded[k] for k in ("tokens", "segment_ids", "positions")}
            call_seed = (int(seed) * 1_000_003 + call) % (2 ** 31)
            samples = jax.device_get(self._call(prompts, jax.random.key(call_seed)))
            content = samples.lengths - samples.stop_lengths
            for row in range(len(chunk)):
                out.append(Candidate(text=response_text(self.tokenizer, samples.tokens[row], int(content[row])),
                                     model=self.name, seed=call_seed,
                                     settings={**self.settings, "row": row, "rows": self.rows}))
        return out


class Pool:
    """The deployed models and the rule for which two answer a turn:
    "same" (the first model twice), "given" (`pair`, two names), "random" (two distinct models of
    the pool, uniformly; the same one twice if the pool has one)."""

    def __init__(self, models: list[DeployedModel], pairing: str = "random", pair=(), seed: int = 0):
        if not models:
            raise ConfigError("config.deployments is empty: deploy at least one model")
        if pairing not in PAIRINGS:
            raise ConfigError(f"config.pairing={pairing!r}: use one of {list(PAIRINGS)}")
        self.models = {m.name: m for m in models}
        if len(self.models) != len(models):
            raise ConfigError("config.deployments: two deployments have the same name")
        if pairing == "given":
            if len(pair) != 2 or any(p not in self.models for p in pair):
                raise ConfigError(f"config.pair={list(pair)}: two names of {sorted(self.models)}")
        self.pairing, self.pair = pairing, tuple(pair)
        self.rng = random.Random(seed)
        tokenizers = [m.tokenizer for m in models]
        if any(not same_tokenizer(tokenizers[0], t) for t in tokenizers[1:]):
            raise ConfigError("config.deployments: the models read different tokenizers")

    def pick(self, rng: random.Random | None = None) -> tuple[str, str]:
        rng = rng or self.rng
        names = list(self.models)
        if self.pairing == "same":
            return names[0], names[0]
        if self.pairing == "given":
            return self.pair
        if len(names) == 1:
            return names[0], names[0]
        a, b = rng.sample(names, 2)
        return a, b

    def candidates(self, contexts: list[str], pairs: list[tuple[str, str]], seed: int):
        """-> [(Candidate a, Candidate b)] for each context with its (model a, model b): each model
        samples all the rows it owes in batched calls (the same model twice: two rows of one call)."""
        wanted = {}
        for i, (a, b) in enumerate(pairs):
            wanted.setdefault(a, []).append((i, 0))
            wanted.setdefault(b, []).append((i, 1))
        out = [[None, None] for _ in contexts]
        for m, (name, slots) in enumerate(wanted.items()):
            got = self.models[name].sample([contexts[i] for i, _ in slots], seed * 7919 + m)
            for (i, side), cand in zip(slots, got):
                out[i][side] = cand
        return [tuple(p) for p in out]


class FakePool:
    """A pool without models for load tests (config.fake_sampling_s > 0): every call sleeps `delay`
    seconds, as a slow sample would, and answers each context with two canned responses."""

    def __init__(self, delay: float):
        self.delay = delay
        self.models = {"fake-a": None, "fake-b": None}

    def pick(self, rng: random.Random | None = None) -> tuple[str, str]:
        return "fake-a", "fake-b"

    def candidates(self, contexts: list[str], pairs: list[tuple[str, str]], seed: int):
        time.sleep(self.delay)
        settings = {"fake_sampling_s": self.delay}
        return [(Candidate(f" canned answer {seed % 997} from {a}", a, settings, seed),
                 Candidate(f" canned answer {seed % 991} from {b}", b, settings, seed)) for a, b in pairs]


def deployed_models(specs, pm, *, max_new_tokens: int, temperature: float, rows: int,
                    lm_loader=None) -> list[DeployedModel]:
    """Loads each distinct (workdir, step) of `specs` once -> one DeployedModel per spec."""
    if lm_loader is None:
        lm_loader = LoadedLM
    loaded, models = {}, []
    for spec in specs:
        key = (spec.workdir, spec.step)
        if key not in loaded:
            loaded[key] = lm_loader(spec.workdir, spec.step)
        models.append(DeployedModel(spec, loaded[key], pm, max_new_tokens=max_new_tokens,
                                    temperature=temperature, rows=rows))
    return models


def load_pool(config, lm_loader=None, pm_loader=None) -> Pool:
    """The pool of a serving config section (configs/serve.py): deployments, reward_model,
    max_new_tokens, temperature, pairing, pair, seed."""
    if pm_loader is None:
        pm_loader = LoadedPM
    specs = [parse_deployment(d) for d in config.deployments]
    pm = pm_loader(config.reward_model) if any(s.k > 1 for s in specs) else None
    models = deployed_models(specs, pm, max_new_tokens=config.max_new_tokens, temperature=config.temperature,
                             rows=config.rows_per_call, lm_loader=lm_loader)
    return Pool(models, config.pairing, tuple(config.pair), config.seed)
