"""The HHH prompt C of context distillation (Askell et al. 2021 §1.2, §2): read from
a text file, cut to a token budget that keeps the preamble and whole example dialogues from the
start, rendered as `\\n\\nHuman: … \\n\\nAssistant: …` turns between `-----` separators.

File format: sections separated by lines of exactly `-----`; the first is the preamble, each later
one a dialogue written as `Human: …` / `Assistant: …` paragraphs.
"""

import hashlib
import importlib.resources

from etils import epath

from hh.config import ConfigError

SHIPPED_PROMPT = "hhh_prompt.txt"
SEPARATOR = "\n\n-----"   # after the preamble and after every dialogue: the text follows the last one


def prompt_path(prompt_file: str) -> epath.Path:
    """config.distill.prompt_file: "" is the prompt shipped with the package."""
    if prompt_file:
        return epath.Path(prompt_file)
    return epath.Path(str(importlib.resources.files("hh.distill") / SHIPPED_PROMPT))


def parse_prompt(text: str, source: str) -> tuple[str, list[str]]:
    """-> (preamble, dialogues) where each dialogue starts with "\\n\\nHuman:"; errors name `source`."""
    sections = [s.strip() for s in text.replace("\r\n", "\n").split("\n-----\n")]
    preamble, dialogues = sections[0], sections[1:]
    if not preamble:
        raise ConfigError(f"HHH prompt file {source}: the first section (the preamble) is empty")
    rendered = []
    for i, dialogue in enumerate(dialogues, 1):
        if not dialogue.startswith("Human:") or "\n\nAssistant:" not in dialogue:
            raise ConfigError(f"HHH prompt file {source}: dialogue {i} must start with 'Human:' and "
                              f"contain a blank line then 'Assistant:' (sections are separated by "
                              f"lines of '-----')")
        rendered.append("\n\n" + dialogue)
    return preamble, rendered


def read_prompt(prompt_file: str) -> tuple[str, list[str]]:
    path = prompt_path(prompt_file)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"config.distill.prompt_file={str(path)!r} cannot be read: {e}") from None
    return parse_prompt(text, str(path))


def render_prompt(preamble: str, dialogues) -> str:
    """Preamble, then each dialogue, each followed by the separator; the distilled text comes next."""
    return preamble + SEPARATOR + "".join(d + SEPARATOR for d in dialogues)


def budgeted_prompt(preamble: str, dialogues, tokenizer, max_tokens: int, source: str):
    """-> (prompt text, its token ids): the preamble and the longest run of whole dialogues from the
    start within `max_tokens` (0: all). Whole dialogues, because a cut one would show the teacher
    an assistant turn that stops mid-sentence."""
    kept = list(dialogues)
    while True:
        text = render_prompt(preamble, kept)
        ids = tokenizer.encode(text)
        if not max_tokens or len(ids) <= max_tokens:
            return text, ids
        if not kept:
            raise ConfigError(f"config.distill.prompt_max_tokens={max_tokens}: the preamble of the HHH "
                              f"prompt {source} alone is {len(ids)} tokens; raise the budget or "
                              f"shorten the preamble")
        kept.pop()


def check_fits(n_prompt: int, text_len: int, seq_len: int, source: str):
    """The teacher reads [bos] + prompt + text[:-1] = n_prompt + text_len positions: it must stay
    within the context the LM was trained on (config.data.seq_len)."""
    if n_prompt + text_len > seq_len:
        raise ConfigError(f"the HHH prompt {source} is {n_prompt} tokens and config.distill.text_len="
                          f"{text_len}: {n_prompt + text_len} > config.data.seq_len={seq_len}; lower "
                          f"config.distill.prompt_max_tokens or config.distill.text_len")


def load_prompt(distill_cfg, tokenizer, seq_len: int):
    """config.distill -> (prompt text, token ids), checked to fit the teacher's context."""
    source = str(prompt_path(distill_cfg.prompt_file))
    preamble, dialogues = read_prompt(distill_cfg.prompt_file)
    text, ids = budgeted_prompt(preamble, dialogues, tokenizer, distill_cfg.prompt_max_tokens, source)
    check_fits(len(ids), distill_cfg.text_len, seq_len, source)
    return text, ids


def prompt_fingerprint(ids) -> str:
    """Identifies the prompt's tokens in the teacher manifest (a changed prompt means new targets)."""
    return hashlib.sha256(",".join(map(str, ids)).encode()).hexdigest()[:16]
