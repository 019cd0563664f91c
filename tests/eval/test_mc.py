"""hh.eval.mc, mc_score, mc_formats: scores against an unpadded full-forward NumPy reference, accuracy
bookkeeping, few-shot prompts, each benchmark reader on a fixture in its real format, the alignment-tax
table. The model is the session's smoke LM (bytes tokenizer, 64 positions, batch 8 on 8 devices)."""

import functools
import json

import jax
import numpy as np
import numpy_reference
import pytest

from hh.data.errors import DataError
from hh.eval import mc, mc_formats as fmt
from hh.trained import LoadedLM
from hh.eval.mc_score import Scorer, bucket_width, request_ids


@pytest.fixture(scope="module")
def scorer(pm_chain):
    return Scorer(LoadedLM(pm_chain["lm"]))


@functools.lru_cache(maxsize=4)
def _params64(lm):
    return numpy_reference.to_float64(jax.device_get(lm.params))


def _reference_logits(lm, ids):
    """Full float64 NumPy forward (tests/numpy_reference.py) over one unpadded row, default
    positions and segments -> log-softmax [len(ids), vocab]."""
    logits = numpy_reference.forward(_params64(lm), lm.model.cfg, np.asarray([ids]))[0][0]
    top = logits.max(-1, keepdims=True)
    return logits - top - np.log(np.exp(logits - top).sum(-1, keepdims=True))


def reference(lm, context, continuation):
    """(sum, mean, greedy) of the continuation: [bos] + context + continuation, oldest context
    tokens dropped until the model's input fits seq_len."""
    ctx, cont = lm.tokenizer.encode(context), lm.tokenizer.encode(continuation)
    body = (ctx + cont)[-lm.seq_len:] if len(ctx + cont) > lm.seq_len else ctx + cont
    seq = [lm.tokenizer.bos_id] + body
    logp = _reference_logits(lm, seq[:-1])
    targets = np.asarray(seq[1:])
    per_token = logp[np.arange(len(targets)), targets][-len(cont):]
    greedy = bool(np.all(logp.argmax(-1)[-len(cont):] == targets[-len(cont):]))
    return per_token.sum(), per_token.mean(), greedy


def test_request_truncation_and_widths():
    from hh.data.byte_tokenizer import ByteTokenizer
    tok = ByteTokenizer()
    inputs, targets, n = request_ids(tok, "abcdefgh", "XY", 6)
    assert inputs == [tok.bos_id] + tok.encode("efghX") and targets == tok.encode("efghXY") and n == 2
    assert request_ids(tok, "", "XY", 6)[0] == [tok.bos_id] + tok.encode("X")
    assert request_ids(tok, "abc", "XY", 6)[0] == [tok.bos_id] + tok.encode("abcX")   # fits: all kept
    with pytest.raises(ValueError, match="exceeds the model's length 6"):
        request_ids(tok, "a", "1234567", 6)
    assert [bucket_width(n, 64) for n in (1, 16, 17, 33, 64)] == [16, 16, 32, 64, 64]


def test_loglikelihoods_equal_unpadded_reference(scorer):
    lm = scorer.lm
    long_context = "Human: what is the capital of France? Assistant: Paris is. " * 3   # > 64 tokens
    pairs = [("The cat sat on the", " mat"), ("Human: hi", " there friend"), ("", " hello"),
             (long_context, " Paris"), (long_context, " the capital of France is Paris"),
             ("a", "b"), ("One two three", " four"), ("One two three", " five six seven eight"),
             ("Assistant:", " I can help with that."), ("x" * 40, " y"), ("q", " " + "z" * 30)]
    got = scorer.loglikelihoods(pairs)   # 11 requests: two batches of 8 in the 16-wide bucket
    for i, (c, x) in enumerate(pairs):
        s, m, g = reference(lm, c, x)
        # float32 scorer vs float64 reference: ~1e-7 per token, summed over up to 31 tokens
        np.testing.assert_allclose(got["sum"][i], s, atol=1e-5, rtol=1e-6)
        np.testing.assert_allclose(got["sum"][i] / got["count"][i], m, atol=1e-5, rtol=0)
        assert got["count"][i] == len(lm.tokenizer.encode(x)) and got["greedy"][i] == g
    widths = {bucket_width(len(request_ids(lm.tokenizer, c, x, lm.seq_len)[0]), lm.seq_len) for c, x in pairs}
    assert widths == {16, 32, 64}
    assert scorer.step.jitted._cache_size() == len(widths)   # one compile per width, not per batch


def test_greedy_flag_on_the_models_own_continuation(scorer):
    lm = scorer.lm
    ids = [lm.tokenizer.bos_id] + lm.tokenizer.encode("Human: Can you")
    for _ in range(3):   # the reference's own argmax tokens, one at a time
        ids.append(int(_reference_logits(lm, ids)[-1].argmax()))
    own = ids[-3:]
    assert all(4 <= t < 260 for t in own), own   # plain bytes, so decode/encode round-trips
    word = lm.tokenizer.decode(own)
    other = lm.tokenizer.decode([own[0], own[1], 4 + ((own[2] - 4 + 1) % 256)])
    got = scorer.loglikelihoods([("Human: Can you", word), ("Human: Can you", other)])
    assert got["greedy"].tolist() == [True, False]


def test_choice_accuracy_sum_and_mean_disagree_by_hand():
    # item 0: A = -2 over 1 token (mean -2), B = -3 over 3 tokens (mean -1): sum picks A, mean picks B.
    # item 1: three choices, C best both ways; item 2: a tie goes to the first choice.
    sums, counts = [-2.0, -3.0, -5.0, -4.0, -1.0, -1.0, -1.0], [1, 3, 1, 1, 1, 1, 1]
    got = mc.choice_accuracy(sums, counts, answers=[1, 2, 1], n_choices=[2, 3, 2])
    assert got == {"accuracy_sum": pytest.approx(1 / 3), "accuracy_mean": pytest.approx(2 / 3)}


def _write(path, lines):
    path.write_text("".join(json.dumps(x) + "\n" if not isinstance(x, str) else x + "\n" for x in lines))
    return str(path)


JSONL_ITEMS = [{"context": "The cat sat on the", "choices": [" mat", " moon", " quantum"], "answer": 0},
               {"context": "Human: hello", "choices": [" there", " xyz"], "answer": 1},
               {"context": "One two three", "choices": [" four", " five"], "answer": 0},
               {"context": "Assistant: I", "choices": [" can", " zzzq", " help"], "answer": 2}]


def test_task_accuracy_matches_reference_argmax(scorer, tmp_path):
    spec = mc.TaskSpec("jsonl", _write(tmp_path / "own.jsonl", JSONL_ITEMS))
    for shots in (0, 1):
        got = mc.evaluate_task(scorer, spec, shots=shots, seed=3)
        items = mc.prompts_with_shots(fmt.read_jsonl(spec.path), fmt.read_jsonl(spec.path), shots, 3, True)
        hits = {"sum": [], "mean": []}
        for ex in items:
            ref = [reference(scorer.lm, ex.context, c) for c in ex.choices]
            hits["sum"].append(int(np.argmax([r[0] for r in ref])) == ex.answer)
            hits["mean"].append(int(np.argmax([r[1] for r in ref])) == ex.answer)
        assert got == {"examples": 4, "accuracy_sum": np.mean(hits["sum"]),
                       "accuracy_mean": np.mean(hits["mean"])}


def test_few_shot_prompt_exact_string():
    pool = [fmt.Example("Q1\nA. x\nB. y\nAnswer:", (" A", " B"), 1, "Header.\n\n"),
            fmt.Example("Q2\nA. u\nB. v\nAnswer:", (" A", " B"), 0, "Header.\n\n")]
    query = fmt.Example("Q3\nA. p\nB. q\nAnswer:", (" A", " B"), 0, "Header.\n\n")
    assert mc.few_shot_prompt(query, pool) == ("Header.\n\nQ1\nA. x\nB. y\nAnswer: B\n\n"
                                               "Q2\nA. u\nB. v\nAnswer: A\n\nQ3\nA. p\nB. q\nAnswer:")
    assert mc.few_shot_prompt(query, []) == "Header.\n\nQ3\nA. p\nB. q\nAnswer:"
    lam = fmt.lambada_cloze(fmt.Example("Alice met", (" Bob",), 0))
    assert mc.few_shot_prompt(lam, [lam]) == "Alice met ____. -> Bob\n\nAlice met ____. ->"
    qa = mc.qa_example(fmt.QAExample("Who?", ("Bob",), "Bob"))
    assert mc.few_shot_prompt(qa, [qa]) == "Question: Who?\nAnswer: Bob\n\nQuestion: Who?\nAnswer:"


def test_shot_indices_are_seeded_distinct_and_exclude_the_item():
    picks = [mc.shot_indices(6, 3, seed=0, index=i, exclude_self=True) for i in range(6)]
    assert picks == [mc.shot_indices(6, 3, seed=0, index=i, exclude_self=True) for i in range(6)]
    assert all(len(set(p)) == 3 and i not in p for i, p in enumerate(picks))
    assert picks != [mc.shot_indices(6, 3, seed=1, index=i, exclude_self=True) for i in range(6)]
    assert 0 in mc.shot_indices(1, 1, seed=0, index=0, exclude_self=False)
    with pytest.raises(ValueError, match="pool has 5"):
        mc.shot_indices(6, 6, seed=0, index=0, exclude_self=True)


MMLU_CSV = ('"What is 2+2?",3,4,5,6,B\n"Which, of these, is a prime?",4,6,7,8,C\n',
            '"ok",1,2,3,4,A\n"bad row",1,2,3,D\n')
ARC = ({"id": "a1", "question": {"stem": "Which is hot?", "choices": [
    {"text": "ice", "label": "A"}, {"text": "fire", "label": "B"}, {"text": "snow", "label": "C"}]},
    "answerKey": "B"},
       {"id": "a2", "question": {"stem": "Pick two.", "choices": [
           {"text": "one", "label": "1"}, {"text": "two", "label": "2"}]}, "answerKey": "2"})
OBQA_HF = {"id": "7-980", "question_stem": "The sun is", "choices": {
    "text": ["cold", "a star", "wet", "small"], "label": ["A", "B", "C", "D"]}, "answerKey": "B"}
HELLASWAG = {"ind": 4, "activity_label": "Removing ice from car", "ctx_a": "Then, the man writes.",
             "ctx_b": "then", "ctx": "Then, the man writes. then", "endings": [
                 "stops.", "drives.", "leaves.", "waves."], "label": 3, "split": "val"}
TRIVIA_JSON = {"Data": [{"Question": "Which planet is red?", "Answer": {
    "Aliases": ["Mars", "Planet Mars"], "NormalizedAliases": ["mars", "planet mars"], "Value": "Mars"}}],
    "Domain": "unfiltered", "Version": 1.0}


def test_readers_parse_their_real_formats(tmp_path):
    (tmp_path / "high_school_math_test.csv").write_text(MMLU_CSV[0])
    mmlu = fmt.read_mmlu(tmp_path / "high_school_math_test.csv")
    assert mmlu[1] == fmt.Example("Which, of these, is a prime?\nA. 4\nB. 6\nC. 7\nD. 8\nAnswer:",
                                  (" A", " B", " C", " D"), 2,
                                  "The following are multiple choice questions (with answers) about "
                                  "high school math.\n\n")
    arc = fmt.read_arc(_write(tmp_path / "arc.jsonl", ARC))
    assert arc[0].context == "Which is hot?\nA. ice\nB. fire\nC. snow\nAnswer:" and arc[0].answer == 1
    assert arc[1].answer == 1 and arc[1].choices == (" A", " B")   # numeric labels
    obqa = fmt.read_openbookqa(_write(tmp_path / "obqa.jsonl", [OBQA_HF, ARC[0]]))
    assert obqa[0].context == "The sun is\nA. cold\nB. a star\nC. wet\nD. small\nAnswer:"
    assert [e.answer for e in obqa] == [1, 1]
    hs = fmt.read_hellaswag(_write(tmp_path / "hs.jsonl", [HELLASWAG, {**HELLASWAG, "label": "0"}]))
    assert hs[0] == fmt.Example("Removing ice from car: Then, the man writes. then",
                                (" stops.", " drives.", " leaves.", " waves."), 3)
    assert hs[1].answer == 0
    lam = fmt.read_lambada(_write(tmp_path / "lambada.jsonl", [{"text": "he said to his friend Bob"}]))
    assert lam == [fmt.Example("he said to his friend", (" Bob",), 0)]
    own = fmt.read_jsonl(_write(tmp_path / "own.jsonl", JSONL_ITEMS))
    assert own[3] == fmt.Example("Assistant: I", (" can", " zzzq", " help"), 2)
    (tmp_path / "tqa.json").write_text(json.dumps(TRIVIA_JSON))
    tqa = fmt.read_triviaqa(tmp_path / "tqa.json")
    assert tqa == [fmt.QAExample("Which planet is red?", ("Mars", "Planet Mars", "mars", "planet mars"), "Mars")]
    simple = fmt.read_triviaqa(_write(tmp_path / "tqa.jsonl", [{"question": "Q?", "answers": ["A1", "a2"]}]))
    assert simple == [fmt.QAExample("Q?", ("A1", "a2"), "A1")]


@pytest.mark.parametrize("reader,name,lines", [
    ("read_jsonl", "own.jsonl", [JSONL_ITEMS[0], {**JSONL_ITEMS[1], "answer": 2}]),
    ("read_jsonl", "own.jsonl", [JSONL_ITEMS[0], "{not json"]),
    ("read_arc", "arc.jsonl", [ARC[0], {**ARC[0], "answerKey": "E"}]),
    ("read_openbookqa", "obqa.jsonl", [OBQA_HF, {"question_stem": "x", "choices": {"text": ["a"]}}]),
    ("read_hellaswag", "hs.jsonl", [HELLASWAG, {**HELLASWAG, "endings": "stops."}]),
    ("read_lambada", "lambada.jsonl", [{"text": "a b"}, {"text": "oneword"}]),
    ("read_triviaqa", "tqa.jsonl", [{"question": "Q?", "answers": ["A"]}, {"question": "Q?", "answers": []}]),
])
def test_readers_name_the_file_and_line_of_a_bad_row(tmp_path, reader, name, lines):
    path = _write(tmp_path / name, lines)
    with pytest.raises(DataError, match=f"{name}, line 2: "):
        getattr(fmt, reader)(path)


def test_whole_file_errors_name_the_file(tmp_path):
    (tmp_path / "astronomy_dev.csv").write_text(MMLU_CSV[1])
    with pytest.raises(DataError, match="astronomy_dev.csv, line 2: expected 6 columns"):
        fmt.read_mmlu(tmp_path / "astronomy_dev.csv")
    bad = {"Data": [TRIVIA_JSON["Data"][0], {"Question": "x", "Answer": {"Aliases": ["y"]}}]}
    (tmp_path / "tqa.json").write_text(json.dumps(bad))
    with pytest.raises(DataError, match=r"tqa.json: Data\[1\] needs"):
        fmt.read_triviaqa(tmp_path / "tqa.json")
    with pytest.raises(DataError, match="empty.jsonl: empty file"):
        fmt.read_jsonl(_write(tmp_path / "empty.jsonl", []))


def test_triviaqa_normalisation_by_hand():
    assert fmt.normalize_answer("The  Beatles!") == "beatles"
    assert fmt.normalize_answer("A Tale of Two Cities") == "tale of two cities"
    assert fmt.normalize_answer("Washington, D.C.") == "washington d c"
    assert fmt.normalize_answer("rock_and_roll") == "rock and roll"
    assert fmt.normalize_answer("Theatre an Apple") == "theatre apple"   # articles only as words
    assert fmt.exact_match(" the Beatles.", ["Beatles", "Fab Four"])
    assert not fmt.exact_match("Beatle", ["Beatles"])


def _reference_greedy(scorer, prompt, n_new):
    """Uncached greedy decoding by repeated full forwards (the scorer's banned ids excluded)."""
    lm, sampling = scorer.lm, scorer.sampling_config(n_new)
    ids = [lm.tokenizer.bos_id] + lm.tokenizer.encode(prompt)
    new = []
    for _ in range(n_new):
        logp = _reference_logits(lm, ids)[-1]
        logp[list(sampling.banned_ids)] = -np.inf
        new.append(int(logp.argmax()))
        ids.append(new[-1])
        if new[-1] == lm.tokenizer.eos_id or lm.tokenizer.decode(new).endswith("\n"):
            break
    return lm.tokenizer.decode(new).split("\n")[0].strip()


def test_triviaqa_greedy_answers_and_exact_match(scorer, tmp_path):
    questions = ["Which planet is red?", "Who wrote Hamlet?"]
    answers = scorer.greedy_answers([f"Question: {q}\nAnswer:" for q in questions], mc.TRIVIAQA_NEW_TOKENS)
    assert answers == [_reference_greedy(scorer, f"Question: {q}\nAnswer:", mc.TRIVIAQA_NEW_TOKENS)
                       for q in questions]
    rows = [{"question": questions[0], "answers": ["zzz-not-it", answers[0] + "."]},
            {"question": questions[1], "answers": ["zzz-not-it"]}]
    spec = mc.TaskSpec("triviaqa", _write(tmp_path / "tqa.jsonl", rows))
    assert mc.evaluate_task(scorer, spec) == {"examples": 2, "exact_match": 0.5}


def test_alignment_tax_table_same_model_has_zero_delta(pm_chain, tmp_path):
    tasks = [f"jsonl:{_write(tmp_path / 'own.jsonl', JSONL_ITEMS)}",
             f"lambada:{_write(tmp_path / 'lambada.jsonl', [{'text': 'Human: hi there'}, {'text': 'a b c'}])}"]
    result = mc.main([str(pm_chain["lm"])] * 2, tasks, shots=1, out=str(tmp_path / "out"))
    metrics = [(r["task"], r["metric"]) for r in result["rows"]]
    assert metrics == [("jsonl/own", "accuracy_sum"), ("jsonl/own", "accuracy_mean"),
                       ("lambada/lambada", "accuracy"), ("lambada/lambada", "logprob_per_token")]
    assert all(r["delta"] == 0.0 and r["base"] == r["policy"] for r in result["rows"])
    assert json.loads((tmp_path / "out" / "alignment_tax.json").read_text())["rows"] == result["rows"]
    md = (tmp_path / "out" / "alignment_tax.md").read_text()
    assert "| task | metric | n | base | policy | Δ |" in md and "| jsonl/own | accuracy_sum | 4 |" in md
    assert "+0.0000 |" in md
    with pytest.raises(ValueError, match="FORMAT:PATH"):
        mc.parse_task("nope:x.jsonl")


def test_cli_writes_one_models_metrics(pm_chain, tmp_path):
    """The process boundary is what is tested: absl flags defined only under __main__."""
    import subprocess
    import sys

    task = f"jsonl:{_write(tmp_path / 'own.jsonl', JSONL_ITEMS)}"
    subprocess.run([sys.executable, "-m", "hh.eval.mc", "--workdir", str(pm_chain["lm"]), "--task", task,
                    "--shots", "1", "--out", str(tmp_path / "out")], check=True, timeout=300)
    report = json.loads((tmp_path / "out" / "mc_eval.json").read_text())
    assert report["shots"] == 1 and report["metrics"]["jsonl/own"]["examples"] == 4
