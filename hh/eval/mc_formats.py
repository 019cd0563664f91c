"""Readers for the few-shot NLP benchmarks of the alignment-tax evaluation (Bai et al. 2022 §4.6.1).

Each reader turns one benchmark file, in its published format, into `Example`s (a context, the
choices as continuations, the gold index) or `QAExample`s (TriviaQA); hh.eval.mc scores them. Bad
input raises hh.data.errors.DataError naming the file and line. Formats: docs/evaluation.md.
"""

import csv
import dataclasses
import json
import re
import string

from etils import epath

from hh.data.errors import DataError
from hh.data.records import jsonl_records

LETTERS = "ABCDEFGHIJ"
_PUNCTUATION = set(string.punctuation) | {"‘", "’", "´", "`"}


@dataclasses.dataclass(frozen=True)
class Example:
    """A multiple-choice item: score each `context + choices[i]`; `choices[answer]` is gold.

    `header` precedes the whole (few-shot) prompt once, e.g. MMLU's subject line."""
    context: str
    choices: tuple
    answer: int
    header: str = ""


@dataclasses.dataclass(frozen=True)
class QAExample:
    """A free-form question: a greedy answer is right if it matches any alias after normalisation."""
    question: str
    aliases: tuple
    value: str


def _jsonl(path):
    """-> [(line number, dict)] of a JSON-lines file (hh.data.records: errors name file and line)."""
    return list(jsonl_records(path))


def _need(row, key, kind, path, n):
    if key not in row or not isinstance(row[key], kind):
        raise DataError(path, f"needs {key!r} of type {getattr(kind, '__name__', kind)}", n)
    return row[key]


def _strings(values, what, path, n):
    if not isinstance(values, list) or len(values) < 2 or not all(isinstance(v, str) for v in values):
        raise DataError(path, f"{what} must be a list of at least 2 strings", n)
    return tuple(values)


def _answer_index(answer, n_choices, path, n):
    if isinstance(answer, bool) or not isinstance(answer, int) or not 0 <= answer < n_choices:
        raise DataError(path, f"answer {answer!r} is not an index into {n_choices} choices", n)
    return answer


def listed_choices(question: str, choices, labels=LETTERS) -> tuple:
    """The choices written out with letters, answered by a letter (Bai et al. App. E: multiple choice
    lists the choices explicitly, as Gopher does) -> (context, letter continuations)."""
    lines = [question.strip()] + [f"{labels[i]}. {c.strip()}" for i, c in enumerate(choices)]
    return "\n".join(lines) + "\nAnswer:", tuple(f" {labels[i]}" for i in range(len(choices)))


# --- multiple choice ---------------------------------------------------------------------------------
def read_jsonl(path):
    """Our own format: {"context": str, "choices": [str, ...], "answer": int}, scored as given."""
    out = []
    for n, row in _jsonl(path):
        context = _need(row, "context", str, path, n)
        choices = _strings(row.get("choices"), "'choices'", path, n)
        out.append(Example(context, choices, _answer_index(row.get("answer"), len(choices), path, n)))
    return out


def mmlu_subject(path) -> str:
    """'high_school_physics_test.csv' -> 'high school physics' (MMLU names files by subject)."""
    stem = epath.Path(path).stem
    return re.sub(r"_(dev|val|test|auxiliary_train)$", "", stem).replace("_", " ")


def read_mmlu(path):
    """Hendrycks et al.'s csv: question, A, B, C, D, answer letter; no header row."""
    header = f"The following are multiple choice questions (with answers) about {mmlu_subject(path)}.\n\n"
    out = []
    with epath.Path(path).open() as f:
        reader = csv.reader(f)
        for row in reader:
            n = reader.line_num
            if not row:
                continue
            if len(row) != 6:
                raise DataError(path, f"expected 6 columns (question, A, B, C, D, answer), got {len(row)}", n)
            if row[5].strip() not in LETTERS[:4]:
                raise DataError(path, f"answer {row[5]!r} is not one of A, B, C, D", n)
            context, letters = listed_choices(row[0], row[1:5])
            out.append(Example(context, letters, LETTERS.index(row[5].strip()), header))
    if not out:
        raise DataError(path, "no examples")
    return out


def _stem_and_choices(row, path, n):
    """ARC / OpenBookQA: {"question": {"stem", "choices": [{"text", "label"}]}} or the Hugging Face
    export of OpenBookQA: {"question_stem", "choices": {"text": [...], "label": [...]}}."""
    if "question_stem" in row:
        stem, choices = row["question_stem"], row.get("choices")
        ok = isinstance(choices, dict) and isinstance(choices.get("text"), list)
        pairs = list(zip(choices["text"], choices.get("label", []))) if ok else None
    else:
        q = _need(row, "question", dict, path, n)
        stem, raw = q.get("stem"), q.get("choices")
        ok = isinstance(raw, list) and all(isinstance(c, dict) for c in raw)
        pairs = [(c.get("text"), c.get("label")) for c in raw] if ok else None
    if not isinstance(stem, str) or not pairs or len(pairs) < 2 or not all(
            isinstance(t, str) and isinstance(lab, str) for t, lab in pairs):
        raise DataError(path, "needs a question stem and at least 2 choices with 'text' and 'label'", n)
    return stem, pairs


def read_arc(path):
    """ARC (and OpenBookQA's original) jsonl; the answerKey is a label ("A".. or "1"..)."""
    out = []
    for n, row in _jsonl(path):
        stem, pairs = _stem_and_choices(row, path, n)
        labels = [lab for _, lab in pairs]
        key = row.get("answerKey")
        if key not in labels:
            raise DataError(path, f"answerKey {key!r} is not one of the labels {labels}", n)
        context, letters = listed_choices(stem, [t for t, _ in pairs])
        out.append(Example(context, letters, labels.index(key)))
    return out


read_openbookqa = read_arc   # same shape; the HF export's "question_stem" is accepted by both


def read_hellaswag(path):
    """HellaSwag jsonl: "ctx", four "endings", "label"; the endings are scored as continuations of
    "<activity_label>: <ctx>" (Zellers et al.'s completion task, as GPT-3 evaluated it)."""
    out = []
    for n, row in _jsonl(path):
        ctx = _need(row, "ctx", str, path, n).strip()
        endings = _strings(row.get("endings"), "'endings'", path, n)
        label = row.get("label")
        label = int(label) if isinstance(label, str) and label.isdigit() else label   # HF: "2"
        activity = row.get("activity_label")
        context = f"{activity}: {ctx}" if isinstance(activity, str) and activity else ctx
        out.append(Example(context, tuple(" " + e.strip() for e in endings),
                           _answer_index(label, len(endings), path, n)))
    return out


def read_lambada(path):
    """LAMBADA jsonl {"text"} (OpenAI's lambada_test.jsonl): predict the last word given the rest.
    -> Examples with one choice, " <last word>"; correct iff it is the greedy continuation."""
    out = []
    for n, row in _jsonl(path):
        text = _need(row, "text", str, path, n).strip()
        if " " not in text:
            raise DataError(path, "text needs a context and a last word", n)
        context, word = text.rsplit(" ", 1)
        out.append(Example(context, (" " + word,), 0))
    return out


def lambada_cloze(example: Example) -> Example:
    """GPT-3's few-shot fill-in-the-blank form ("… ____. -> word"; Bai et al. §4.6.1)."""
    return dataclasses.replace(example, context=example.context + " ____. ->")


# --- TriviaQA ----------------------------------------------------------------------------------------
def _qa(question, answer, path, where):
    aliases = answer.get("Aliases", []) if isinstance(answer, dict) else None
    value = answer.get("Value") if isinstance(answer, dict) else None
    if not isinstance(question, str) or not isinstance(value, str) or not isinstance(aliases, list) or \
            not all(isinstance(a, str) for a in aliases):
        raise DataError(path, f"{where}needs 'Question' and 'Answer' with 'Value' and 'Aliases'", None)
    normalized = answer.get("NormalizedAliases", [])
    return QAExample(question, tuple(dict.fromkeys([value, *aliases, *normalized])), value)


def read_triviaqa(path):
    """TriviaQA: a `.json` file is the released rc/unfiltered format {"Data": [{"Question",
    "Answer": {"Aliases", "NormalizedAliases", "Value"}}]}; any other name is a simplified jsonl,
    one {"question", "answers": [str]} a line (the first answer is the few-shot gold)."""
    if epath.Path(path).suffix == ".json":
        try:
            data = json.loads(epath.Path(path).read_text())["Data"]
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise DataError(path, f"not a TriviaQA json with a 'Data' list ({e})") from None
        if not isinstance(data, list) or not data:
            raise DataError(path, "'Data' must be a non-empty list")
        return [_qa(d.get("Question") if isinstance(d, dict) else None,
                    d.get("Answer") if isinstance(d, dict) else None, path, f"Data[{i}] ")
                for i, d in enumerate(data)]
    out = []
    for n, row in _jsonl(path):
        question = _need(row, "question", str, path, n)
        answers = row.get("answers")
        if not isinstance(answers, list) or not answers or not all(isinstance(a, str) for a in answers):
            raise DataError(path, "'answers' must be a non-empty list of strings", n)
        out.append(QAExample(question, tuple(answers), answers[0]))
    return out


def normalize_answer(text: str) -> str:
    """TriviaQA's official normalisation (Joshi et al. 2017, triviaqa_evaluation.py): underscores and
    punctuation become spaces, lowercase, the articles a/an/the dropped, whitespace collapsed."""
    text = text.replace("_", " ").lower()
    text = "".join(" " if ch in _PUNCTUATION else ch for ch in text)
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def exact_match(prediction: str, aliases) -> bool:
    return normalize_answer(prediction) in {normalize_answer(a) for a in aliases}


READERS = {"jsonl": read_jsonl, "mmlu": read_mmlu, "arc": read_arc, "openbookqa": read_openbookqa,
           "hellaswag": read_hellaswag, "lambada": read_lambada, "triviaqa": read_triviaqa}
