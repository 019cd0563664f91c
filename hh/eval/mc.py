"""Few-shot NLP evaluations and the alignment-tax table (Bai et al. 2022 §4.6.1, Fig 3, 28, 29).

`evaluate_task` scores one benchmark file with one model (multiple choice by log-likelihood, sum
and mean per token; Lambada by greedy last word; TriviaQA by greedy exact match); `alignment_tax`
compares a base LM with its RLHF policy on the same tasks. CLI:
`python -m hh.eval.mc --workdir BASE [--workdir POLICY] --task FORMAT:PATH[,DEV_PATH] --shots 0 --out DIR`.
"""

import dataclasses
import json

import numpy as np
from absl import app, flags, logging
from etils import epath

from hh.eval import mc_formats
from hh.trained import LoadedLM
from hh.eval.mc_score import Scorer
from hh.io import atomic_write_text

TRIVIAQA_NEW_TOKENS = 16   # answers are short entity names


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    """A benchmark file in one of mc_formats.READERS' formats; few-shot examples come from
    `dev_path` when given, else from the same file (never the item itself)."""
    format: str
    path: str
    dev_path: str = ""

    @property
    def name(self) -> str:
        return f"{self.format}/{epath.Path(self.path).stem}"


def parse_task(spec: str) -> TaskSpec:
    """'FORMAT:PATH' or 'FORMAT:PATH,DEV_PATH' -> TaskSpec."""
    fmt, sep, paths = spec.partition(":")
    if not sep or fmt not in mc_formats.READERS or not paths:
        raise ValueError(f"task {spec!r}: expected FORMAT:PATH[,DEV_PATH] with FORMAT one of "
                         f"{sorted(mc_formats.READERS)}")
    path, _, dev = paths.partition(",")
    return TaskSpec(fmt, path, dev)


# --- few-shot prompts -------------------------------------------------------------------------------
def shot_indices(n_pool: int, k: int, seed: int, index: int, exclude_self: bool) -> list:
    """k distinct pool indices for item `index`, drawn with a generator seeded by (seed, index): the
    same shots for an item whatever else is evaluated or how it is batched."""
    candidates = [i for i in range(n_pool) if not (exclude_self and i == index)]
    if k > len(candidates):
        raise ValueError(f"{k} shots requested but the few-shot pool has {len(candidates)} examples")
    rng = np.random.default_rng([seed, index])
    return [candidates[i] for i in rng.choice(len(candidates), size=k, replace=False)]


def few_shot_prompt(example: mc_formats.Example, shots) -> str:
    """header + each shot's context and gold continuation, blank-line separated, then the query."""
    solved = "".join(s.context + s.choices[s.answer] + "\n\n" for s in shots)
    return example.header + solved + example.context


def qa_example(qa: mc_formats.QAExample) -> mc_formats.Example:
    """A TriviaQA question as a prompt whose one 'choice' is the gold answer (for shots)."""
    return mc_formats.Example(f"Question: {qa.question}\nAnswer:", (" " + qa.value,), 0)


def prompts_with_shots(examples, pool, k: int, seed: int, exclude_self: bool):
    """-> the examples with their k-shot prompt as context (choices and answer unchanged)."""
    out = []
    for i, ex in enumerate(examples):
        shots = [pool[j] for j in shot_indices(len(pool), k, seed, i, exclude_self)] if k else []
        out.append(dataclasses.replace(ex, context=few_shot_prompt(ex, shots), header=""))
    return out


# --- metrics ----------------------------------------------------------------------------------------
def choice_accuracy(sums, counts, answers, n_choices) -> dict:
    """Accuracy when the chosen answer is the argmax of the summed log-prob, and of the mean per
    token (length-normalised); ties go to the first choice. sums/counts: flat over all choices."""
    hits = {"sum": [], "mean": []}
    start = 0
    for answer, n in zip(answers, n_choices):
        s, c = np.asarray(sums[start:start + n]), np.asarray(counts[start:start + n])
        hits["sum"].append(int(np.argmax(s)) == answer)
        hits["mean"].append(int(np.argmax(s / c)) == answer)
        start += n
    return {"accuracy_sum": float(np.mean(hits["sum"])), "accuracy_mean": float(np.mean(hits["mean"]))}


def _read(spec: TaskSpec):
    reader = mc_formats.READERS[spec.format]
    test = reader(spec.path)
    return test, (reader(spec.dev_path) if spec.dev_path else test)


def evaluate_task(scorer: Scorer, spec: TaskSpec, shots: int = 0, seed: int = 0) -> dict:
    """Metrics of one model on one task: {"examples", metric: value}."""
    test, pool = _read(spec)
    exclude_self = not spec.dev_path
    if spec.format == "triviaqa":
        prompts = prompts_with_shots([qa_example(q) for q in test], [qa_example(q) for q in pool],
                                     shots, seed, exclude_self)
        answers = scorer.greedy_answers([p.context for p in prompts], TRIVIAQA_NEW_TOKENS)
        hits = [mc_formats.exact_match(a, q.aliases) for a, q in zip(answers, test)]
        return {"examples": len(test), "exact_match": float(np.mean(hits))}
    if spec.format == "lambada" and shots:
        test, pool = [mc_formats.lambada_cloze(e) for e in test], [mc_formats.lambada_cloze(e) for e in pool]
    examples = prompts_with_shots(test, pool, shots, seed, exclude_self)
    scores = scorer.loglikelihoods([(e.context, c) for e in examples for c in e.choices])
    if spec.format == "lambada":
        return {"examples": len(test), "accuracy": float(np.mean(scores["greedy"])),
                "logprob_per_token": float(np.sum(scores["sum"]) / np.sum(scores["count"]))}
    return {"examples": len(test), **choice_accuracy(scores["sum"], scores["count"],
                                                     [e.answer for e in examples],
                                                     [len(e.choices) for e in examples])}


def evaluate_model(lm, specs, shots: int = 0, seed: int = 0) -> dict:
    """{task name: metrics} for one loaded model."""
    scorer = Scorer(lm)
    return {spec.name: evaluate_task(scorer, spec, shots, seed) for spec in specs}


# --- the alignment-tax table ------------------------------------------------------------------------
def tax_rows(base: dict, policy: dict) -> list:
    """[{"task", "metric", "base", "policy", "delta"}] with delta = policy - base (negative: a tax)."""
    rows = []
    for task, metrics in base.items():
        for metric, value in metrics.items():
            if metric != "examples":
                other = policy[task][metric]
                rows.append({"task": task, "metric": metric, "examples": metrics["examples"],
                             "base": value, "policy": other, "delta": other - value})
    return rows


def markdown_table(rows, base_name: str = "base", policy_name: str = "policy") -> str:
    lines = [f"| task | metric | n | {base_name} | {policy_name} | Δ |", "|---|---|---:|---:|---:|---:|"]
    lines += [f"| {r['task']} | {r['metric']} | {r['examples']} | {r['base']:.4f} | {r['policy']:.4f} "
              f"| {r['delta']:+.4f} |" for r in rows]
    return "\n".join(lines) + "\n"


def alignment_tax(base_workdir, policy_workdir, tasks, shots: int = 0, seed: int = 0) -> dict:
    """Scores the base LM and the policy on `tasks` (TaskSpecs or 'FORMAT:PATH' strings)."""
    specs = [t if isinstance(t, TaskSpec) else parse_task(t) for t in tasks]
    base = evaluate_model(LoadedLM(base_workdir), specs, shots, seed)
    policy = evaluate_model(LoadedLM(policy_workdir), specs, shots, seed)
    return {"base": str(base_workdir), "policy": str(policy_workdir), "shots": shots, "seed": seed,
            "tasks": [dataclasses.asdict(s) for s in specs], "rows": tax_rows(base, policy)}


def write_report(result: dict, out_dir) -> epath.Path:
    """alignment_tax.json and alignment_tax.md in out_dir; -> the .md path."""
    out_dir = epath.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / "alignment_tax.json", json.dumps(result, indent=2))
    md = out_dir / "alignment_tax.md"
    atomic_write_text(md, f"Alignment tax, {result['shots']}-shot: base `{result['base']}`, "
                          f"policy `{result['policy']}`\n\n" + markdown_table(result["rows"]))
    return md


def main(workdirs, tasks, shots: int, out: str, seed: int = 0) -> dict:
    """One workdir: its metrics (mc_eval.json); two: the alignment-tax table (base, policy)."""
    if len(workdirs) not in (1, 2):
        raise ValueError("give one --workdir (metrics) or two (base, then policy: the alignment tax)")
    if len(workdirs) == 2:
        result = alignment_tax(workdirs[0], workdirs[1], tasks, shots, seed)
        print(markdown_table(result["rows"]))
        write_report(result, out)
        return result
    specs = [parse_task(t) for t in tasks]
    result = {"workdir": workdirs[0], "shots": shots, "seed": seed,
              "metrics": evaluate_model(LoadedLM(workdirs[0]), specs, shots, seed)}
    epath.Path(out).mkdir(parents=True, exist_ok=True)
    atomic_write_text(epath.Path(out) / "mc_eval.json", json.dumps(result, indent=2))
    print(json.dumps(result["metrics"], indent=1))
    return result


if __name__ == "__main__":
    flags.DEFINE_multi_string("workdir", None, "LM workdir; a second one is the policy (alignment tax)")
    flags.DEFINE_multi_string("task", None, "FORMAT:PATH[,DEV_PATH], FORMAT one of "
                              + ", ".join(sorted(mc_formats.READERS)))
    flags.DEFINE_integer("shots", 0, "few-shot examples prepended to each item")
    flags.DEFINE_integer("seed", 0, "seed of the few-shot selection")
    flags.DEFINE_string("out", None, "output folder")
    flags.mark_flags_as_required(["workdir", "task", "out"])

    def run(argv):
        del argv
        f = flags.FLAGS
        if not f["verbosity"].present:
            logging.set_verbosity(logging.WARNING)   # orbax logs every restore at INFO
        main(f.workdir, f.task, f.shots, f.out, f.seed)

    app.run(run)
