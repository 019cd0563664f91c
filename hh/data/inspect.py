"""Look at a real dataset before training on it: counts, skips, token lengths and a few examples.

`python -m hh.data.inspect --dataset hh_rlhf/harmless-base --manual_dir $HH_RLHF_DIR
--data_dir DIR [--split test] [--tokenizer bytes|<dir>]` builds the TFDS dataset if needed and
prints the report; each part is a function the tests call.
"""

import argparse
import sys

import numpy as np

from hh.data.byte_tokenizer import ByteTokenizer
from hh.data.tfds import prepare
from hh.data.tokenizer import load_tokenizer


def _text(value) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def text_histogram(values, bins: int = 10, width: int = 40) -> list[str]:
    """ASCII histogram lines "  lo – hi | ####  count", equal-width bins from 0 to the max."""
    values = np.asarray(values)
    if values.size == 0:
        return ["  (no values)"]
    counts, edges = np.histogram(values, bins=bins, range=(0, max(int(values.max()), 1) + 1))
    scale = width / max(counts.max(), 1)
    return [f"  {int(lo):>7,} – {int(hi):>7,} | {'#' * int(round(c * scale)):<{width}} {c:,}"
            for lo, hi, c in zip(edges[:-1], edges[1:], counts)]


def token_lengths(examples, tokenizer, fields) -> dict[str, np.ndarray]:
    """{field: [n_examples] token counts} over `examples` (dicts of bytes or str)."""
    return {f: np.array([len(tokenizer.encode(_text(e[f]))) for e in examples], np.int64)
            for f in fields}


def length_report(lengths: dict, tokenizer_name: str) -> list[str]:
    lines = []
    for field, values in lengths.items():
        stats = (f"median {np.median(values):,.1f}, max {values.max():,}" if values.size else "")
        lines.append(f"{field} length in tokens ({tokenizer_name}; n={values.size:,}; {stats}):")
        lines += text_histogram(values)
    return lines


def render_pair(example, index: int, max_prompt_chars: int = 800) -> str:
    """One pair as the model sees it: the prompt's tail, then both responses, then its flags."""
    prompt = _text(example["prompt"])
    if len(prompt) > max_prompt_chars:
        prompt = "…" + prompt[-max_prompt_chars:]
    flags = [f for f in ("prompts_differ", "empty_chosen", "empty_rejected", "identical")
             if bool(example.get(f, False))]
    lines = [f"--- example {index} (source line {int(example['source_line'])}, human turns: "
             f"{int(example['num_turns'])}, flags: {', '.join(flags) or 'none'})",
             prompt, f"[chosen]  {_text(example['chosen'])!r}",
             f"[rejected]{_text(example['rejected'])!r}"]
    if "prompts_differ" in flags:
        lines.insert(2, f"[rejected prompt tail] {_text(example['rejected_prompt'])[-200:]!r}")
    return "\n".join(lines)


def render_attempt(example, index: int, max_chars: int = 800) -> str:
    transcript = _text(example["transcript"])
    tail = transcript if len(transcript) <= max_chars else "…" + transcript[-max_chars:]
    return (f"--- attempt {index} (record {int(example['record'])}, rating "
            f"{float(example['rating'])}, {_text(example['num_params'])} "
            f"{_text(example['model_type'])})\n{tail}")


def split_report(builder, split: str, tokenizer, tokenizer_name: str, n_examples: int = 3):
    """The report lines for one split of a prepared hh_rlhf or red_team_attempts builder."""
    source = builder.as_data_source(split=split)
    examples = [source[i] for i in range(len(source))]
    pairs = builder.name == "hh_rlhf"
    lines = [f"== {builder.info.full_name} [{split}]: {len(source):,} "
             f"{'pairs' if pairs else 'attempts'}"]
    if pairs:
        report = builder.info.metadata["splits"].get(split, {})
        lines.append(f"read {report.get('pairs_read', '?'):,} pairs from {report.get('source')} "
                     f"(sha256 {'verified' if report.get('sha256_verified') else 'not pinned'})")
        lines.append(f"flagged (kept unless skipped): {report.get('flagged') or 'none'}")
        lines.append(f"skipped by reason: {report.get('skipped') or 'none'} "
                     f"(keep_policy {builder.info.metadata['keep_policy']})")
        turns = np.bincount([int(e["num_turns"]) for e in examples])
        lines.append("human turns per prompt: "
                     + ", ".join(f"{t}: {c}" for t, c in enumerate(turns) if c))
        fields = ("prompt", "chosen", "rejected")
    else:
        fields = ("transcript",)
    lines += length_report(token_lengths(examples, tokenizer, fields), tokenizer_name)
    render = render_pair if pairs else render_attempt
    lines += [render(e, i) for i, e in enumerate(examples[:n_examples], 1)]
    return lines


def report(builder, splits=None, tokenizer=None, tokenizer_name="bytes") -> str:
    tokenizer = tokenizer or ByteTokenizer()
    lines = []
    missing = builder.info.metadata["missing_splits"] if builder.name == "hh_rlhf" else {}
    for split, path in sorted(missing.items()):
        lines.append(f"split {split!r} not built: {path} was missing when it was prepared")
    for split in splits or sorted(builder.info.splits):
        lines += split_report(builder, split, tokenizer, tokenizer_name)
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m hh.data.inspect", description=__doc__)
    parser.add_argument("--dataset", required=True, help="hh_rlhf/<tranche> or red_team_attempts")
    parser.add_argument("--data_dir", required=True,
                        help="where the TFDS files are (built there if absent)")
    parser.add_argument("--manual_dir",
                        help="local copy laid out like github.com/anthropics/hh-rlhf")
    parser.add_argument("--split", help="one split (default: every built split)")
    parser.add_argument("--tokenizer", default="bytes",
                        help='"bytes" or a directory saved by hh.data.tokenizer')
    for key in ("on_prompt_mismatch", "on_empty_response", "on_identical"):
        parser.add_argument(f"--{key}", choices=("keep", "skip"),
                            help="hh_rlhf keep policy (default: keep, or what DIR was built with)")
    args = parser.parse_args(argv)
    policy = {k: v for k in ("on_prompt_mismatch", "on_empty_response", "on_identical")
              if (v := getattr(args, k)) is not None}
    builder = prepare(args.dataset, args.data_dir, args.manual_dir,
                      **({"keep_policy": policy} if policy else {}))
    tokenizer = load_tokenizer(args.tokenizer)
    print(report(builder, [args.split] if args.split else None, tokenizer, args.tokenizer))


if __name__ == "__main__":
    sys.exit(main())
