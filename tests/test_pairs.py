"""`speechsum pairs`: candidates sampled from a tiny model, judged offline, pairwise and by rubric."""

from __future__ import annotations

import json

import pytest
from datasets import load_from_disk
from typer.testing import CliRunner

from speechsum_cli.app import app
from speechsum_cli.families import FAMILIES
from speechsum_cli.metrics.preference import rank_offline, resolve_pairwise, tournament
from speechsum_cli.stages.pairs import STUDENT, TEACHER, add_teacher_answers
from tests.conftest import espeak, speech_of_duration

runner = CliRunner()
TRANSCRIPT = "Alice Chen opened the budget review at nine. The team agreed to hire three engineers."
ROWS = [
    ("p1", "Alice Chen opened the review at nine.", "Summarize the meeting as bullets.", "bullets"),
    ("p2", "Bob sends the contract by Friday.", "One sentence, please.", "tldr"),
    ("p3", "The launch moves to March fourteenth.", "What was decided?", "decisions"),
]


@pytest.fixture(scope="module")
def prompts(tmp_path_factory):
    folder = tmp_path_factory.mktemp("prompts")
    lines = []
    for row_id, transcript, query, style in ROWS:
        espeak(transcript, folder / f"{row_id}.wav")
        lines.append(
            json.dumps(
                {"id": row_id, "audio": f"{row_id}.wav", "transcript": transcript, "query": query, "style": style}
            )
        )
    (folder / "prompts.jsonl").write_text("\n".join(lines) + "\n")
    return folder / "prompts.jsonl"


def run_pairs(*args, max_new_tokens=8):
    return runner.invoke(app, ["pairs", *args, "--no-progress", "--max-new-tokens", str(max_new_tokens)])


# --- decisions on hand-written cases -------------------------------------------------------


def test_offline_judge_an_invented_number_loses():
    row = {"transcript": TRANSCRIPT, "style": "bullets"}
    faithful = "- Alice Chen opened the review at nine.\n- Three engineers will be hired."
    invented = "- Alice Chen opened the review at ten.\n- Five engineers will be hired."
    best, worst, scores, tie = rank_offline([invented, faithful], row)
    assert (best, worst, tie) == (1, 0, False)
    assert scores[1] > scores[0]


def test_offline_judge_a_repetitive_candidate_loses_and_equal_ones_tie():
    row = {"transcript": TRANSCRIPT, "style": "paragraph"}
    loop = "Alice opened the review. Alice opened the review. Alice opened the review."
    clean = "Alice opened the review and the team agreed to hire three engineers."
    assert rank_offline([loop, clean], row)[:2] == (1, 0)
    assert rank_offline([clean, clean.upper().lower()], row)[3] is True


@pytest.mark.parametrize(
    ("first_as_a", "first_as_b", "outcome"),
    [
        ("A", "B", "first"),
        ("B", "A", "second"),
        ("tie", "tie", "tie"),
        ("A", "A", "inconsistent"),
        ("B", "B", "inconsistent"),
        ("A", "tie", "inconsistent"),
    ],
)
def test_both_orders_must_agree(first_as_a, first_as_b, outcome):
    assert resolve_pairwise(first_as_a, first_as_b) == outcome


def test_tournament_over_consistent_outcomes():
    best, worst, wins, tie = tournament(3, {(0, 1): "second", (0, 2): "tie", (1, 2): "first"})
    assert (best, worst, wins, tie) == (1, 0, [0.5, 2.0, 0.5], False)


# --- end to end -----------------------------------------------------------------------------


@pytest.mark.parametrize("model_type", sorted(FAMILIES))
def test_offline_pairs_end_to_end(model_type, prompts, tiny_models, tmp_path):
    out = tmp_path / "pairs"
    result = run_pairs(
        "--model",
        str(tiny_models(model_type)),
        "--data",
        str(prompts),
        "--out",
        str(out),
        "--judge",
        "offline",
        "--k",
        "3",
        "--json",
    )
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    counts = printed["counts"]
    manifest = json.loads((out / "speechsum.json").read_text())
    assert printed["out"] == str(out) and manifest["counts"] == counts
    assert counts["prompts"] == 3
    assert counts["pairs_kept"] + counts["ties"] + counts["prompts_without_two_distinct_candidates"] == 3
    ds = load_from_disk(str(out))
    assert {
        "id",
        "audio",
        "transcript",
        "query",
        "chosen",
        "rejected",
        "chosen_score",
        "rejected_score",
        "judge_rationale",
    } <= set(ds.column_names)
    for row in ds:
        assert row["chosen"] != row["rejected"]
        assert row["chosen"].strip() and row["rejected"].strip()  # empty samples never form pairs
        assert row["chosen_score"] >= row["rejected_score"]


def prefer_fewer_digits(messages):
    """A consistent judge: the summary with fewer digits wins, whatever its position."""
    user = messages[1]["content"]
    a = user.split("Summary A:\n<<<\n", 1)[1].split("\n>>>", 1)[0]
    b = user.split("Summary B:\n<<<\n", 1)[1].split("\n>>>", 1)[0]
    da, db = sum(c.isdigit() for c in a), sum(c.isdigit() for c in b)
    better = "tie" if (da, a) == (db, b) else "A" if (da, a) < (db, b) else "B"
    return json.dumps({"better": better, "rationale": "fewer unsupported numbers"})


def always_a(messages):
    return json.dumps({"better": "A", "rationale": "position bias"})


def test_pairwise_judge_asks_both_orders_and_keeps_consistent_verdicts(prompts, tiny_models, tmp_path):
    from tests.fake_openai import FakeOpenAI

    model = str(tiny_models("qwen2_audio"))
    with FakeOpenAI(prefer_fewer_digits) as server:
        result = run_pairs(
            "--model",
            model,
            "--data",
            str(prompts),
            "--out",
            str(tmp_path / "p"),
            "--json",
            "--judge-base-url",
            server.base_url,
            "--judge-model",
            "j",
            "--judge-cache-dir",
            str(tmp_path / "c"),
        )
        assert result.exit_code == 0, result.output
        counts = json.loads(result.stdout)["counts"]
        assert server.requests == 2 * (3 - counts["prompts_without_two_distinct_candidates"])  # 2 orders
    assert counts["inconsistent"] == 0
    ds = load_from_disk(str(tmp_path / "p"))
    for row in ds:
        assert sum(c.isdigit() for c in row["chosen"]) <= sum(c.isdigit() for c in row["rejected"])
        assert row["judge_rationale"] == "fewer unsupported numbers"

    with FakeOpenAI(always_a) as biased:
        result = run_pairs(
            "--model",
            model,
            "--data",
            str(prompts),
            "--out",
            str(tmp_path / "q"),
            "--judge-base-url",
            biased.base_url,
            "--judge-model",
            "j",
            "--judge-cache-dir",
            str(tmp_path / "c2"),
        )
    assert result.exit_code == 1  # every verdict flips with the order: nothing kept, and it says why
    assert "'inconsistent': " in result.stderr and "no preference pair was kept" in result.stderr
    assert not (tmp_path / "q").exists()


def test_judge_failures_fail_the_run_or_warn_and_retry_failed_resends_only_those(prompts, tiny_models, tmp_path):
    from tests.fake_openai import FakeOpenAI

    model = str(tiny_models("qwen2_audio"))

    def args(out, server, *more):
        return (
            "--model",
            model,
            "--data",
            str(prompts),
            "--out",
            str(tmp_path / out),
            "--judge-base-url",
            server.base_url,
            "--judge-model",
            "j",
            "--judge-cache-dir",
            str(tmp_path / f"c-{out}"),
            "--judge-concurrency",
            "1",
            *more,
        )

    with FakeOpenAI(lambda messages: "I prefer not to answer in JSON.") as broken:
        every = run_pairs(*args("all", broken))
    assert every.exit_code == 3, every.output
    assert "every judge request failed:" in every.stderr and "(invalid JSON: " in every.stderr
    assert "first error: invalid JSON" in every.stderr and "--retry-failed" in every.stderr
    assert not (tmp_path / "all").exists()

    with FakeOpenAI(prefer_fewer_digits) as server:
        server.fail_next("garbage", "garbage", "garbage")  # the first call: its try and 2 repair turns
        too_many = run_pairs(*args("p", server))
        assert too_many.exit_code == 3, too_many.output
        assert "too many judge requests failed" in too_many.stderr and "(invalid JSON: 1)" in too_many.stderr
        assert not (tmp_path / "p").exists()
        accepted = run_pairs(*args("p", server, "--max-failed-share", "0.5"))
        assert accepted.exit_code == 0, accepted.output
        assert "1 of " in accepted.stderr and "judge requests failed (invalid JSON: 1)" in accepted.stderr
        manifest = json.loads((tmp_path / "p" / "speechsum.json").read_text())
        assert manifest["llm_failures"]["failed"] == 1
        sent = server.requests
        retried = run_pairs(*args("p", server, "--retry-failed"))
        assert retried.exit_code == 0, retried.output
        assert server.requests == sent + 1  # the cached invalid reply is asked again; the rest is cached
    assert json.loads((tmp_path / "p" / "speechsum.json").read_text())["llm_failures"]["failed"] == 0


def test_rubric_judge_keeps_pairs_above_the_margin(prompts, tiny_models, tmp_path):
    from tests.fake_openai import FakeOpenAI

    def by_digits(messages):
        user = messages[1]["content"]
        summary = user.split("The summary to evaluate:\n<<<\n", 1)[1].split("\n>>>", 1)[0]
        score = max(1, 7 - sum(c.isdigit() for c in summary))
        return json.dumps(
            {
                "accuracy": score,
                "coherence": 4,
                "style": 4,
                "hallucination": score,
                "instruction_following": 4,
                "overall": score,
                "invented_facts": [],
                "rationale": "r",
            }
        )

    with FakeOpenAI(by_digits) as server:
        result = run_pairs(
            "--model",
            str(tiny_models("qwen2_audio")),
            "--data",
            str(prompts),
            "--out",
            str(tmp_path / "p"),
            "--judge",
            "rubric",
            "--min-margin",
            "1",
            "--k",
            "3",
            "--judge-base-url",
            server.base_url,
            "--judge-model",
            "j",
            "--judge-cache-dir",
            str(tmp_path / "c"),
            "--json",
        )
    counts = json.loads(result.stdout)["counts"] if result.exit_code == 0 else None
    if counts is None:  # every prompt below the margin is possible with random candidates
        assert "below_margin" in result.stderr
        return
    for row in load_from_disk(str(tmp_path / "p")):
        assert row["chosen_score"] - row["rejected_score"] >= 1


def test_dry_run_sends_nothing_and_writes_nothing(prompts, tiny_models, tmp_path):
    from tests.fake_openai import FakeOpenAI

    with FakeOpenAI(prefer_fewer_digits) as server:
        result = run_pairs(
            "--model",
            str(tiny_models("qwen2_audio")),
            "--data",
            str(prompts),
            "--out",
            str(tmp_path / "p"),
            "--judge-base-url",
            server.base_url,
            "--judge-cache-dir",
            str(tmp_path / "c"),
            "--dry-run",
        )
        as_json = run_pairs(
            "--model",
            str(tiny_models("qwen2_audio")),
            "--data",
            str(prompts),
            "--out",
            str(tmp_path / "p"),
            "--judge-base-url",
            server.base_url,
            "--judge-cache-dir",
            str(tmp_path / "c"),
            "--dry-run",
            "--json",
            "--price-in",
            "1000",
            "--price-out",
            "1000",
        )
        assert server.requests == 0
    assert result.exit_code == 0, result.output
    assert "Dry run:" in result.stdout and "judge requests" in result.stdout
    assert as_json.exit_code == 0, as_json.output
    estimate = json.loads(as_json.stdout)
    assert estimate["dry_run"] is True and estimate["requests"] > 0
    assert estimate["cost_usd"] > 0  # --price-in/--price-out price the unknown judge model
    assert not (tmp_path / "p").exists()


@pytest.mark.slow
def test_pairwise_judge_through_transformers_serve(prompts, tiny_models, transformers_server, tmp_path):
    """The real server round trip; a tiny judge answers noise, so every verdict fails: nothing usable
    (exit 3, no output), with the reason counted and the retry named."""
    base_url, judge_model = transformers_server
    result = run_pairs(
        "--model",
        str(tiny_models("qwen2_audio")),
        "--data",
        str(prompts),
        "--out",
        str(tmp_path / "p"),
        "--judge-base-url",
        base_url,
        "--judge-model",
        judge_model,
        "--judge-max-tokens",
        "16",
        "--judge-concurrency",
        "2",
        "--judge-cache-dir",
        str(tmp_path / "c"),
    )
    assert result.exit_code == 3, result.output
    message = " ".join(result.stderr.split())
    assert "every judge request failed" in message and "invalid JSON" in message
    assert "--retry-failed" in message
    assert not (tmp_path / "p").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--judge", "pairwise"],
            "no API key: environment variable OPENAI_API_KEY is not set. Export it, pass "
            "--judge-api-key-env NAME for another variable, or --judge-base-url for a local server.",
        ),
        (
            ["--judge", "offline", "--on-long-audio", "truncate"],
            "'truncate' is not a policy pairs supports; use error or chunk or drop",
        ),
        (["--judge", "offline", "--temperature", "0"], "--temperature must be > 0"),
    ],
)
def test_bad_flags(prompts, tiny_models, tmp_path, monkeypatch, args, message):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    result = run_pairs(
        "--model", str(tiny_models("qwen2_audio")), "--data", str(prompts), "--out", str(tmp_path / "p"), *args
    )
    assert result.exit_code in (1, 2)  # 2: a usage error found by the flag parser
    assert message in " ".join(result.stderr.replace("│", " ").split())


def test_long_audio_is_refused_by_id_dropped_and_counted_or_read_whole(tiny_models, tmp_path):
    long = speech_of_duration(tmp_path / "long.wav", 7.0, workdir=tmp_path)  # tiny window: 5 s
    short = espeak("Bob agreed.", tmp_path / "short.wav")
    data = tmp_path / "p.jsonl"
    data.write_text(
        "\n".join(
            json.dumps(r)
            for r in [
                {"id": "long-1", "audio": long.name, "transcript": "x", "query": "q"},
                {"id": "short-1", "audio": short.name, "transcript": "Bob agreed.", "query": "q"},
            ]
        )
        + "\n"
    )
    args = ["--model", str(tiny_models("qwen2_audio")), "--data", str(data), "--judge", "offline", "--k", "4"]
    refused = run_pairs(*args, "--out", str(tmp_path / "a"))
    refusal = " ".join(refused.stderr.split())
    assert refused.exit_code == 1 and "long-1" in refusal and "--on-long-audio drop" in refusal
    assert "--on-long-audio chunk" in refusal and "truncate" not in refusal  # only what pairs supports
    dropped = run_pairs(*args, "--out", str(tmp_path / "b"), "--on-long-audio", "drop", "--json")
    assert "dropped 1 row(s) with audio over the 5 s window" in " ".join(dropped.stderr.split())
    if dropped.exit_code == 0:
        assert json.loads(dropped.stdout)["counts"]["long_audio_dropped"] == 1
    else:
        assert "'long_audio_dropped': 1" in dropped.stderr
    whole = run_pairs(*args, "--out", str(tmp_path / "c"), "--on-long-audio", "chunk", "--json")
    assert "dropped 1 row" not in " ".join(whole.stderr.split())
    if whole.exit_code == 0:
        assert json.loads(whole.stdout)["counts"]["long_audio_dropped"] == 0
    else:
        assert "'long_audio_dropped': 0" in whole.stderr


# --- the shared option vocabulary (issue 17) ---------------------------------------------------


def test_judge_flags_reach_the_config_and_the_old_spellings_are_gone(prompts, tiny_models, tmp_path):
    """pairs' judge is --judge-*; the pre-release --base-url/--api-key-env/--concurrency/--cache-dir
    are refused. --ckpt is the checkpoint's synonym; -d/-o the short flags."""
    from tests.fake_openai import FakeOpenAI

    out = tmp_path / "p"
    with FakeOpenAI(prefer_fewer_digits) as server:
        for old in ("--base-url", "--api-key-env", "--concurrency", "--cache-dir"):
            refused = run_pairs(
                "--ckpt",
                str(tiny_models("qwen2_audio")),
                "-d",
                str(prompts),
                "-o",
                str(out),
                old,
                "x",
                "--judge-model",
                "j",
            )
            assert refused.exit_code == 2 and "No such option" in refused.output, (old, refused.output)
        result = run_pairs(
            "--ckpt",
            str(tiny_models("qwen2_audio")),
            "-d",
            str(prompts),
            "-o",
            str(out),
            "--judge-base-url",
            server.base_url,
            "--judge-api-key-env",
            "JUDGE_KEY",
            "--judge-concurrency",
            "2",
            "--judge-cache-dir",
            str(tmp_path / "c"),
            "--judge-model",
            "j",
        )
    assert result.exit_code == 0, result.output
    llm = json.loads((out / "speechsum.json").read_text())["config"]["llm"]
    assert (llm["base_url"], llm["api_key_env"], llm["concurrency"], llm["cache_dir"]) == (
        server.base_url,
        "JUDGE_KEY",
        2,
        str(tmp_path / "c"),
    )
    # without --json: one human line on stdout, not JSON
    counts = json.loads((out / "speechsum.json").read_text())["counts"]
    assert result.stdout.startswith(f"{out}: {counts['pairs_kept']} pairs kept of 3 prompts")
    assert len(result.stdout.splitlines()) == 1


def test_column_flags_map_other_names(tiny_models, prompts, tmp_path):
    rows = [json.loads(line) for line in prompts.read_text().splitlines()]
    renamed = tmp_path / "renamed.jsonl"
    renamed.write_text(
        "".join(
            json.dumps(
                {
                    "key": r["id"],
                    "clip": str(prompts.parent / r["audio"]),
                    "text": r["transcript"],
                    "prompt": r["query"],
                    "style": r["style"],
                }
            )
            + "\n"
            for r in rows
        )
    )
    out = tmp_path / "pairs"
    result = run_pairs(
        "--model",
        str(tiny_models("qwen2_audio")),
        "--data",
        str(renamed),
        "--out",
        str(out),
        "--judge",
        "offline",
        "--k",
        "3",
        "--json",
        "--id-column",
        "key",
        "--audio-column",
        "clip",
        "--transcript-column",
        "text",
        "--query-column",
        "prompt",
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["counts"]["prompts"] == 3
    assert set(load_from_disk(str(out))["id"]) <= {"p1", "p2", "p3"}


def test_on_long_audio_help_lists_only_what_pairs_supports():
    result = runner.invoke(app, ["pairs", "--help"], env={"COLUMNS": "200"})
    line = next(x for x in result.stdout.splitlines() if "--on-long-audio" in x)
    assert "[error|chunk|drop]" in line and "truncate" not in line


# --- the teacher's own answer as a candidate (issue 18) ----------------------------------------

FAITHFUL = "The meeting started at nine."
"""What the scripted teacher answers to every prompt: supported by TEACHER_ROWS' transcript."""
TEACHER_TRANSCRIPT = "The meeting started at nine. Alice Chen presented the budget."
TEACHER_ROWS = [("t1", "Summarize the meeting."), ("t2", "When did it start?"), ("t3", "One sentence, please.")]


def scripted_lm(source, out, answer):
    """A copy of the tiny chat LM whose greedy answer to any prompt is ``answer``.

    Attention and MLP outputs are zeroed, so each position's logits depend on its own token only
    (a bigram model); embeddings and the output layer then spell the chain: the generation
    prompt's last token -> the answer's tokens -> end of turn; any other token -> end of turn.
    """
    import torch
    from transformers import AutoTokenizer, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(source)
    model = LlamaForCausalLM.from_pretrained(source)
    prompt = tok.apply_chat_template([{"role": "user", "content": "x"}], tokenize=False, add_generation_prompt=True)
    chain = [tok(prompt, add_special_tokens=False)["input_ids"][-1]] + tok(answer, add_special_tokens=False)[
        "input_ids"
    ]
    successor = dict(zip(chain, chain[1:] + [tok.eos_token_id]))
    assert len(successor) == len(chain) < model.config.hidden_size  # distinct tokens, one direction each
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        embed, head = model.model.embed_tokens.weight, model.lm_head.weight
        embed.zero_()
        embed[:, 0] = 1.0
        head.zero_()
        head[tok.eos_token_id, 0] = 1.0
        for slot, token in enumerate(chain, start=1):
            embed[token] = 0.0
            embed[token, slot] = 1.0
            head[successor[token], slot] = 1.0
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def faithful_teacher(tiny_text_lm, tmp_path_factory):
    return scripted_lm(tiny_text_lm, tmp_path_factory.mktemp("faithful-teacher"), FAITHFUL)


@pytest.fixture(scope="module")
def teacher_prompts(tmp_path_factory):
    """Prompts whose reference summary is FAITHFUL (the offline judge also ranks by ROUGE-L)."""
    folder = tmp_path_factory.mktemp("teacher-prompts")
    espeak(TEACHER_TRANSCRIPT, folder / "meeting.wav")
    path = folder / "prompts.jsonl"
    path.write_text(
        "".join(
            json.dumps(
                {
                    "id": row_id,
                    "audio": "meeting.wav",
                    "transcript": TEACHER_TRANSCRIPT,
                    "query": query,
                    "summary": FAITHFUL,
                }
            )
            + "\n"
            for row_id, query in TEACHER_ROWS
        )
    )
    return path


def test_the_scripted_teacher_says_its_answer(faithful_teacher):
    """The premise of the tests below: the teacher's greedy answer is FAITHFUL, whatever it reads."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(faithful_teacher)
    model = AutoModelForCausalLM.from_pretrained(faithful_teacher)
    for transcript in (TEACHER_TRANSCRIPT, "Bob sends the contract by Friday."):
        text = tok.apply_chat_template(
            [{"role": "user", "content": transcript}], tokenize=False, add_generation_prompt=True
        )
        ids = tok(text, return_tensors="pt", add_special_tokens=False)
        new = model.generate(**ids, max_new_tokens=20, do_sample=False)[0, ids["input_ids"].shape[1] :]
        assert tok.decode(new, skip_special_tokens=True) == FAITHFUL


def test_teacher_answers_join_at_seeded_positions_once_each():
    students = [["a one", "b two"]] * 60
    texts, sources, counts = add_teacher_answers(students, ["teacher says"] * 60, seed=3)
    assert counts == {"teacher_answers": 60, "teacher_candidates": 60, "teacher_same_as_student": 0, "teacher_empty": 0}
    positions = [src.index(TEACHER) for src in sources]
    assert set(positions) == {0, 1, 2}  # not always last (nor first): tie-breaks by position are fair
    for row_texts, src in zip(texts, sources):
        assert [t for t, s in zip(row_texts, src) if s == STUDENT] == ["a one", "b two"]  # student order kept
        assert row_texts[src.index(TEACHER)] == "teacher says"
    assert add_teacher_answers(students, ["teacher says"] * 60, seed=3)[1] == sources  # the seed decides
    assert add_teacher_answers(students, ["teacher says"] * 60, seed=4)[1] != sources

    # an answer a student sample already says (case/space aside) stays once, as the student's; an
    # empty one is not a candidate; both are counted
    texts, sources, counts = add_teacher_answers([["A  One", "b two"], ["a one", "b two"]], ["a one", " "], seed=0)
    assert texts == [["A  One", "b two"], ["a one", "b two"]]
    assert sources == [[STUDENT, STUDENT]] * 2
    assert counts == {"teacher_answers": 2, "teacher_candidates": 0, "teacher_same_as_student": 1, "teacher_empty": 1}


def test_a_faithful_teacher_answer_is_chosen_over_invented_samples(
    teacher_prompts, faithful_teacher, tiny_models, tmp_path
):
    """The random student invents (unsupported items, no overlap with the reference); the
    teacher's answer joins as one more candidate and the offline judge must prefer it."""
    out = tmp_path / "pairs"
    result = run_pairs(
        "--model",
        str(tiny_models("qwen2_audio")),
        "--data",
        str(teacher_prompts),
        "--out",
        str(out),
        "--judge",
        "offline",
        "--k",
        "2",
        "--teacher",
        str(faithful_teacher),
        "--json",
        max_new_tokens=16,
    )  # FAITHFUL is 12 tokens
    assert result.exit_code == 0, result.output
    counts = json.loads(result.stdout)["counts"]
    assert json.loads((out / "speechsum.json").read_text())["counts"] == counts
    assert counts["teacher_answers"] == counts["teacher_candidates"] == counts["prompts"] == 3
    assert counts["pairs_kept"] == counts["chosen_teacher"] == 3 and counts["rejected_teacher"] == 0
    assert counts["teacher_hit_max_new_tokens"] == 0
    ds = load_from_disk(str(out))
    assert set(ds["chosen"]) == {FAITHFUL}
    assert set(ds["chosen_source"]) == {TEACHER} and set(ds["rejected_source"]) == {STUDENT}
    manifest = json.loads((out / "speechsum.json").read_text())
    assert manifest["config"]["teacher"] == str(faithful_teacher)

    # dpo reads these rows as any others: the teacher's answer is just a chosen text to it
    trained = runner.invoke(
        app,
        [
            "dpo",
            "--model",
            str(tiny_models("qwen2_audio")),
            "--data",
            str(out),
            "--out",
            str(tmp_path / "dpo"),
            "--max-steps",
            "2",
            "--json",
        ],
    )
    assert trained.exit_code == 0, trained.output
    assert json.loads(trained.stdout)["counts"]["train_pairs"] == 3

    # a budget too small for the answer: it is cut, kept, and counted
    cut = run_pairs(
        "--model",
        str(tiny_models("qwen2_audio")),
        "--data",
        str(teacher_prompts),
        "--out",
        str(tmp_path / "cut"),
        "--judge",
        "offline",
        "--k",
        "2",
        "--teacher",
        str(faithful_teacher),
        "--json",
        max_new_tokens=4,
    )
    assert cut.exit_code == 0, cut.output
    assert json.loads(cut.stdout)["counts"]["teacher_hit_max_new_tokens"] == 3


def test_a_lora_adapter_teacher_works_like_its_merged_model(teacher_prompts, faithful_teacher, tiny_models, tmp_path):
    """An adapter dir (adapter + tokenizer) loads through transformers' PEFT integration."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    adapter = tmp_path / "teacher-adapter"
    lora = get_peft_model(
        AutoModelForCausalLM.from_pretrained(faithful_teacher), LoraConfig(r=2, target_modules=["q_proj"])
    )  # B = 0: same answers as its base
    lora.save_pretrained(adapter)
    AutoTokenizer.from_pretrained(faithful_teacher).save_pretrained(adapter)
    result = run_pairs(
        "--model",
        str(tiny_models("qwen2_audio")),
        "--data",
        str(teacher_prompts),
        "--out",
        str(tmp_path / "p"),
        "--judge",
        "offline",
        "--teacher",
        str(adapter),
        "--json",
        max_new_tokens=16,
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["counts"]["chosen_teacher"] == 3
    assert set(load_from_disk(str(tmp_path / "p"))["chosen"]) == {FAITHFUL}


def test_random_teacher_candidates_are_counted_and_sourced(prompts, tiny_models, tiny_text_lm, tmp_path):
    out = tmp_path / "pairs"
    result = run_pairs(
        "--model",
        str(tiny_models("qwen2_audio")),
        "--data",
        str(prompts),
        "--out",
        str(out),
        "--judge",
        "offline",
        "--k",
        "2",
        "--teacher",
        str(tiny_text_lm),
        "--teacher-system",
        "Answer from the transcript only.",
    )
    assert result.exit_code == 0, result.output
    counts = json.loads((out / "speechsum.json").read_text())["counts"]
    assert counts["teacher_answers"] == counts["prompts"] == 3
    assert counts["teacher_candidates"] + counts["teacher_same_as_student"] + counts["teacher_empty"] == 3
    assert counts["chosen_teacher"] + counts["rejected_teacher"] <= counts["pairs_kept"]
    ds = load_from_disk(str(out))
    assert set(ds["chosen_source"]) | set(ds["rejected_source"]) <= {STUDENT, TEACHER}
    assert counts["chosen_teacher"] == ds["chosen_source"].count(TEACHER)
    assert counts["rejected_teacher"] == ds["rejected_source"].count(TEACHER)
    # one human line that says how often the teacher's answer won
    assert len(result.stdout.splitlines()) == 1
    assert result.stdout.startswith(f"{out}: {counts['pairs_kept']} pairs kept of 3 prompts")
    assert result.stdout.rstrip().endswith(
        f"; the teacher's answer was chosen in {counts['chosen_teacher']} and rejected in "
        f"{counts['rejected_teacher']} of them ({counts['teacher_candidates']} of 3 answers were candidates)"
    )


def test_without_teacher_every_candidate_is_the_students(prompts, tiny_models, tmp_path):
    out = tmp_path / "pairs"
    result = run_pairs(
        "--model",
        str(tiny_models("qwen2_audio")),
        "--data",
        str(prompts),
        "--out",
        str(out),
        "--judge",
        "offline",
        "--k",
        "3",
        "--json",
    )
    assert result.exit_code == 0, result.output
    assert "chosen_teacher" not in json.loads(result.stdout)["counts"]
    ds = load_from_disk(str(out))
    assert set(ds["chosen_source"]) == set(ds["rejected_source"]) == {STUDENT}


def test_the_pairwise_judge_never_sees_sources_and_sees_the_teacher_in_both_places(
    teacher_prompts, faithful_teacher, tiny_models, tmp_path
):
    from tests.fake_openai import FakeOpenAI

    seen: list[str] = []

    def record(messages):
        seen.append(json.dumps(messages))
        return prefer_fewer_digits(messages)

    with FakeOpenAI(record) as server:
        result = run_pairs(
            "--model",
            str(tiny_models("qwen2_audio")),
            "--data",
            str(teacher_prompts),
            "--out",
            str(tmp_path / "p"),
            "--k",
            "2",
            "--teacher",
            str(faithful_teacher),
            "--judge-base-url",
            server.base_url,
            "--judge-model",
            "j",
            "--judge-cache-dir",
            str(tmp_path / "c"),
            "--json",
            max_new_tokens=16,
        )
    assert result.exit_code == 0, result.output
    counts = json.loads(result.stdout)["counts"]
    assert counts["teacher_candidates"] == 3
    as_a = sum(f"Summary A:\\n<<<\\n{FAITHFUL}\\n>>>" in m for m in seen)
    as_b = sum(f"Summary B:\\n<<<\\n{FAITHFUL}\\n>>>" in m for m in seen)
    assert as_a == as_b > 0  # judged, in both orders
    for message in seen:
        assert not any(word in message.lower() for word in (TEACHER, STUDENT, "source"))


def test_teacher_needs_the_transcript_before_any_model_loads(tmp_path):
    data = tmp_path / "p.jsonl"
    data.write_text(json.dumps({"id": "a", "audio": "a.wav", "query": "q"}) + "\n")
    result = run_pairs(
        "--model",
        str(tmp_path / "no-model"),
        "--data",
        str(data),
        "--out",
        str(tmp_path / "o"),
        "--judge",
        "offline",
        "--teacher",
        str(tmp_path / "no-teacher"),
    )
    assert result.exit_code == 1
    stderr = " ".join(result.stderr.replace("│", " ").split())
    assert f"data '{data}' has no column 'transcript'" in stderr
    assert "the judge and the --teacher read it" in stderr


def test_a_teacher_without_chat_template_is_refused_before_the_student_loads(prompts, tiny_text_lm, tmp_path):
    from transformers import AutoTokenizer

    plain = tmp_path / "plain-lm"
    tok = AutoTokenizer.from_pretrained(tiny_text_lm)
    tok.chat_template = None
    tok.save_pretrained(plain)
    result = run_pairs(
        "--model",
        str(tmp_path / "no-model"),
        "--data",
        str(prompts),
        "--out",
        str(tmp_path / "o"),
        "--judge",
        "offline",
        "--teacher",
        str(plain),
    )
    assert result.exit_code == 1
    assert f"--teacher '{plain}' has no chat template" in " ".join(result.stderr.replace("│", " ").split())


def test_a_missing_audio_file_is_named_by_row_and_data_file_before_any_model_loads(prompts, tmp_path):
    """pairs probed the audio after loading the model, and named neither the row nor the file."""
    rows = [
        {**row, "audio": str(prompts.parent / row["audio"])}
        for row in map(json.loads, prompts.read_text().splitlines())
    ]
    rows[1]["audio"] = str(tmp_path / "gone.wav")
    rows[2]["transcript"] = " "
    data = tmp_path / "prompts.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = run_pairs(
        "--model",
        str(tmp_path / "no-such-model"),
        "--data",
        str(data),
        "--out",
        str(tmp_path / "pairs"),
        "--judge",
        "offline",
    )
    assert result.exit_code == 1, result.output
    message = " ".join(result.stderr.split())
    assert f"data '{data}' has rows pairs cannot use:" in message
    assert "1 row(s) with an empty 'transcript' (the judge reads it): ids 'p3'" in message
    assert (
        f"1 row(s) with unreadable 'audio': ids 'p2' (first: 'p2': audio file '{tmp_path / 'gone.wav'}' does not exist."
    ) in message
    assert "no-such-model" not in message  # the rows were checked before the model


def test_a_prompt_with_audio_too_short_for_the_encoder_is_sampled_and_counted(prompts, tiny_models, tmp_path):
    """A clip of a few samples crashed Qwen2-Audio's generate; pairs samples it padded with
    silence, warns naming the row, and counts it."""
    import numpy as np
    import soundfile as sf

    rows = [
        {**row, "audio": str(prompts.parent / row["audio"])}
        for row in map(json.loads, prompts.read_text().splitlines())
    ]
    sf.write(tmp_path / "blip.wav", np.full(40, 0.1, np.float32), 16000)
    rows[0]["audio"] = str(tmp_path / "blip.wav")
    data = tmp_path / "prompts.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "pairs"
    model = str(tiny_models("qwen2_audio"))
    result = run_pairs(
        "--model",
        model,
        "--data",
        str(data),
        "--out",
        str(out),
        "--judge",
        "offline",
        "--k",
        "4",
        "--batch-size",
        "1",
        "--json",
    )
    assert result.exit_code == 0, result.output
    warning = " ".join(result.stderr.split())
    assert "1 prompt with audio shorter than the 0.060 s the model's audio encoder reads" in warning
    assert "ids 'p1'" in warning
    assert json.loads(result.stdout)["counts"]["short_audio_padded"] == 1
