"""`speechsum distill`: losses against hand/brute-force values; a tiny student distilled from a tiny teacher."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from speechsum_cli.app import app
from speechsum_cli.families import FAMILIES
from speechsum_cli.inference.feature_cache import CACHE_DIRNAME
from speechsum_cli.stages.distill.losses import (
    chunked_divergence,
    completion_mask,
    repetition_rate,
    sampled_reverse_kl,
    token_divergence,
    token_logprobs,
)
from tests.conftest import espeak

runner = CliRunner()
ROWS = [
    ("k1", "Alice opened the budget review at nine."),
    ("k2", "Bob sends the contract to Northwind by Friday."),
    ("k3", "The team hires three engineers in March."),
    ("k4", "Carol drafts the proposal and Dan books the room."),
]
HELD = [
    ("h1", "The launch moves to March fourteenth."),
    ("h2", "Everyone reads the report next week."),
]
QUERY = "Summarize the recording in one sentence."


# --- losses -------------------------------------------------------------------------------------


def brute_kl(p: list[float], q: list[float]) -> float:
    return sum(a * (math.log(a) - math.log(b)) for a, b in zip(p, q) if a > 0)


def test_divergences_match_hand_computed_values():
    s_logits = torch.tensor([[math.log(0.5), math.log(0.25), math.log(0.25)]])
    t_logits = torch.tensor([[math.log(0.25), math.log(0.5), math.log(0.25)]])
    ps, pt = [0.5, 0.25, 0.25], [0.25, 0.5, 0.25]
    # KL(s||t) = 0.5 ln2 + 0.25 ln(0.5) = 0.25 ln 2, symmetric here; use an asymmetric case too.
    assert token_divergence(s_logits, t_logits, "reverse-kl").item() == pytest.approx(0.25 * math.log(2), abs=1e-6)
    assert token_divergence(s_logits, t_logits, "reverse-kl").item() == pytest.approx(brute_kl(ps, pt), abs=1e-6)
    ps2, pt2 = [0.7, 0.2, 0.1], [0.1, 0.3, 0.6]
    s2, t2 = torch.tensor([ps2]).log(), torch.tensor([pt2]).log()
    assert token_divergence(s2, t2, "reverse-kl").item() == pytest.approx(brute_kl(ps2, pt2), abs=1e-6)
    assert token_divergence(s2, t2, "forward-kl").item() == pytest.approx(brute_kl(pt2, ps2), abs=1e-6)
    for beta in (0.1, 0.5, 0.9):
        m = [beta * t + (1 - beta) * s for s, t in zip(ps2, pt2)]
        expected = beta * brute_kl(pt2, m) + (1 - beta) * brute_kl(ps2, m)
        assert token_divergence(s2, t2, "jsd", beta).item() == pytest.approx(expected, abs=1e-6)
    # jsd(0.5) is the symmetric Jensen-Shannon divergence, bounded by ln 2
    assert token_divergence(s2, t2, "jsd", 0.5).item() < math.log(2)
    with pytest.raises(ValueError):
        token_divergence(s2, t2, "jsd", 1.0)


def test_divergence_is_zero_when_teacher_equals_student_and_logits_shift_free():
    logits = torch.randn(7, 50)
    for kind in ("reverse-kl", "forward-kl", "jsd"):
        assert torch.allclose(token_divergence(logits, logits + 3.0, kind), torch.zeros(7), atol=1e-5)
    assert sampled_reverse_kl(torch.tensor([-1.2, -0.3]), torch.tensor([-1.2, -0.3])).abs().max() == 0


def test_chunked_equals_unchunked_in_value_and_gradient():
    torch.manual_seed(0)
    teacher = torch.randn(37, 64)
    for kind in ("reverse-kl", "forward-kl", "jsd"):
        a = torch.randn(37, 64, requires_grad=True)
        b = a.detach().clone().requires_grad_(True)
        whole = token_divergence(a, teacher, kind, 0.3)
        parts = chunked_divergence(b, teacher, kind, 0.3, chunk_size=5)
        assert torch.allclose(whole, parts, atol=1e-6)
        whole.sum().backward()
        parts.sum().backward()
        assert torch.allclose(a.grad, b.grad, atol=1e-6)


def test_reverse_kl_gradient_is_the_expected_analytic_one():
    # d/dz KL(softmax(z) || q) = p * (log p - log q - KL)
    z = torch.randn(1, 6, requires_grad=True)
    q_logits = torch.randn(1, 6)
    kl = token_divergence(z, q_logits, "reverse-kl")
    kl.sum().backward()
    p = torch.softmax(z.detach(), -1)
    log_ratio = torch.log_softmax(z.detach(), -1) - torch.log_softmax(q_logits, -1)
    assert torch.allclose(z.grad, p * (log_ratio - kl.detach()), atol=1e-6)


def test_sampled_estimator_value_and_policy_gradient():
    z = torch.randn(4, 9, requires_grad=True)
    tokens = torch.tensor([0, 3, 8, 3])
    t_logp = torch.log_softmax(torch.randn(4, 9), -1).gather(-1, tokens[:, None]).squeeze(-1)
    s_logp = token_logprobs(z, tokens, chunk_size=3)
    est = sampled_reverse_kl(s_logp, t_logp)
    assert torch.allclose(est, (s_logp - t_logp).detach())  # the value: log p_s - log p_t
    est.sum().backward()
    # gradient: -(log p_t - log p_s) * grad log p_s(y), advantage held constant
    z2 = z.detach().clone().requires_grad_(True)
    s2 = torch.log_softmax(z2, -1).gather(-1, tokens[:, None]).squeeze(-1)
    advantage = (t_logp - s2).detach()
    (-(advantage * s2)).sum().backward()
    assert torch.allclose(z.grad, z2.grad, atol=1e-6)


def test_sampled_estimator_is_unbiased_for_the_reverse_kl_gradient():
    torch.manual_seed(0)
    z = torch.randn(5, requires_grad=True)
    q = torch.log_softmax(torch.randn(5), -1)
    exact = torch.autograd.grad(token_divergence(z[None], q[None]).sum(), z)[0]
    p = torch.softmax(z.detach(), -1)
    # expectation over y ~ p of the estimator's gradient, computed exactly by enumeration
    expected = torch.zeros(5)
    for y in range(5):
        logp = torch.log_softmax(z, -1)[y]
        g = torch.autograd.grad(sampled_reverse_kl(logp[None], q[y][None]).sum(), z)[0]
        expected += p[y] * g
    assert torch.allclose(expected, exact, atol=1e-6)


def test_completion_mask_keeps_through_first_stop_and_drops_padding():
    ids = torch.tensor([[5, 6, 2, 7, 2], [5, 2, 0, 0, 0], [5, 6, 7, 8, 9]])
    real = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [1, 1, 1, 1, 1]]).bool()
    mask = completion_mask(ids, [2], real)
    assert mask.tolist() == [[True, True, True, False, False], [True, True, False, False, False], [True] * 5]


@pytest.mark.parametrize("estimator", ["full", "sampled"])
def test_distill_loss_ignores_padding_and_post_stop_positions(estimator):
    from speechsum_cli.stages.distill.losses import distill_loss
    from speechsum_cli.stages.distill.scores import Scored, TeacherScores
    from speechsum_cli.training.head import Head

    torch.manual_seed(0)
    s, t = torch.randn(2, 4, 11), torch.randn(2, 4, 11)
    tokens = torch.tensor([[3, 4, 2, 9], [5, 2, 0, 0]])
    mask = completion_mask(tokens, [2], torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]]).bool())
    t_logp = torch.log_softmax(t, -1).gather(-1, tokens[..., None]).squeeze(-1)

    def loss_of(student, teacher, teacher_logp):
        full = estimator == "full"  # the rows are logits: an identity head
        scored = Scored(
            student,
            Head(None, 11),
            TeacherScores(teacher_logp, teacher if full else None, Head(None, 11) if full else None),
            tokens,
            mask,
            0,
        )
        return distill_loss(scored, kind="reverse-kl", beta=0.5, estimator=estimator, chunk_size=2)[0]

    junk_s, junk_t, junk_lp = s.clone(), t.clone(), t_logp.clone()
    junk_s[~mask], junk_t[~mask], junk_lp[~mask] = 50.0, -50.0, -99.0
    assert torch.allclose(loss_of(s, t, t_logp), loss_of(junk_s, junk_t, junk_lp))
    kept = mask.reshape(-1)
    if estimator == "full":
        expected = token_divergence(s.reshape(-1, 11)[kept], t.reshape(-1, 11)[kept]).mean()
    else:
        s_lp = torch.log_softmax(s, -1).gather(-1, tokens[..., None]).squeeze(-1)
        expected = (s_lp - t_logp)[mask].mean()
    assert loss_of(s, t, t_logp).item() == pytest.approx(expected.item(), abs=1e-6)


def test_repetition_rate():
    assert repetition_rate([1, 2, 3, 4]) == 0.0
    assert repetition_rate([1, 2, 3, 1, 2, 3]) == pytest.approx(1 - 3 / 4)
    assert repetition_rate([1, 2]) == 0.0


# --- the stage ----------------------------------------------------------------------------------


def write_rows(folder: Path, rows: list[tuple[str, str]], *, summaries: bool = True) -> Path:
    records = []
    for row_id, transcript in rows:
        espeak(transcript, folder / f"{row_id}.wav")
        record = {"id": row_id, "audio": f"{row_id}.wav", "transcript": transcript, "query": QUERY}
        if summaries:
            record["summary"] = transcript
        records.append(record)
    path = folder / "rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_rows(tmp_path_factory.mktemp("distill-data"), ROWS)


@pytest.fixture(scope="module")
def held(tmp_path_factory):
    return write_rows(tmp_path_factory.mktemp("distill-held"), HELD, summaries=False)


@pytest.fixture(scope="module")
def teacher(tiny_teacher) -> Path:
    """The tiny opinionated chat Llama (conftest), sharing the tiny_text_lm tokenizer."""
    return tiny_teacher


@pytest.fixture(scope="module")
def student(teacher, tmp_path_factory) -> Path:
    """A qwen2_audio student composed around the teacher's LLM, so the two share the tokenizer
    (the workflow the vocabulary error recommends)."""
    from tests.test_compose import save_tiny_whisper

    root = tmp_path_factory.mktemp("distill-student")
    whisper = save_tiny_whisper(root / "whisper", positions=250)  # a 5 s window
    out = root / "student"
    result = runner.invoke(
        app, ["compose", "--family", "qwen2_audio", "--encoder", str(whisper), "--llm", str(teacher), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    return out


def distill(*args: str):
    return runner.invoke(app, ["distill", *args, "--json"])


def adapter_state(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path / "adapter_model.safetensors"))


def test_distill_pulls_the_student_toward_the_teacher(student, teacher, data, held, tmp_path, speech_wav):
    out = tmp_path / "kd"
    result = distill(
        "--data",
        str(data),
        "--student",
        str(student),
        "--teacher",
        str(teacher),
        "--out",
        str(out),
        "--eval-data",
        str(held),
        "--max-steps",
        "24",
        "--lr",
        "1e-2",
        "--max-new-tokens",
        "10",
        "--logging-steps",
        "4",
        "--seed",
        "0",
    )
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    metrics, counts = payload["metrics"], payload["counts"]
    # the reverse KL to the teacher on fixed samples for held-out prompts falls by a clear margin
    assert metrics["heldout_reverse_kl_before"] > 0.3
    assert metrics["heldout_reverse_kl_after"] < 0.6 * metrics["heldout_reverse_kl_before"]
    assert metrics["reverse_kl_last"] < metrics["reverse_kl_first"]
    assert counts["samples_drawn"] == 24 * 2 and counts["off_policy_rows"] == 0
    assert counts["student_only_tokens"] == 0

    manifest = json.loads((out / "speechsum.json").read_text())
    assert manifest["stage"] == "distill"
    assert manifest["loss"] == "reverse-kl" and manifest["estimator"] == "full" and manifest["lmbda"] == 1.0
    assert manifest["teacher"]["source"] == str(teacher)
    assert manifest["teacher"]["shared_vocabulary"] == 400
    assert 1 <= manifest["metrics"]["mean_completion_length"] <= 10
    assert "repetition_rate_mean" in manifest["metrics"]
    assert manifest["counts"]["hit_max_new_tokens"] <= manifest["counts"]["samples_drawn"]

    # LoRA moved, the projector trained, the encoder is bit-identical to the student's
    from speechsum_cli.families import load

    weights = adapter_state(out)
    lora_b = [v for k, v in weights.items() if "lora_B" in k]
    assert lora_b and any(v.abs().max() > 0 for v in lora_b)
    before, after = load(str(student), device="cpu", dtype="float32"), load(str(out), device="cpu", dtype="float32")
    prefix = before.family.audio_encoder_prefixes[0]
    enc_before = before.model.get_submodule(prefix).state_dict()
    enc_after = after.model.get_submodule(prefix).state_dict()
    assert all(torch.equal(enc_before[k], enc_after[k]) for k in enc_before)
    proj = before.family.projector_prefixes[0]
    assert not all(
        torch.equal(a, b)
        for a, b in zip(
            before.model.get_submodule(proj).state_dict().values(),
            after.model.get_submodule(proj).state_dict().values(),
        )
    )

    # the output is a speechsum checkpoint: summarize loads it
    summary = runner.invoke(
        app,
        [
            "summarize",
            str(speech_wav),
            "--model",
            str(out),
            "--max-new-tokens",
            "4",
            "--no-progress",
            "--format",
            "json",
            "--on-long-audio",
            "chunk",
        ],
    )
    assert summary.exit_code == 0, summary.output


def test_teacher_reads_the_transcript_in_its_template_and_the_student_hears_the_audio(student, teacher, data):
    """Spy on what each model's forward receives for one scored batch."""
    from transformers import AutoTokenizer

    from speechsum_cli.data.dataset import load_rows
    from speechsum_cli.families import Prompt, load
    from speechsum_cli.stages.distill import DistillConfig
    from speechsum_cli.stages.distill.batch import Batcher
    from speechsum_cli.stages.distill.checks import check_vocab
    from speechsum_cli.stages.distill.teacher import LocalTeacher
    from speechsum_cli.stages.distill.trainer import DistillCollator

    lm = load(str(student), device="cpu", dtype="float32")
    tok = AutoTokenizer.from_pretrained(teacher)
    cfg = DistillConfig(data=data, model=str(student), teacher=str(teacher), out=Path("unused"), teacher_device="cpu")
    n = check_vocab(lm.tokenizer, tok, student="s", teacher="t", family="qwen2_audio")
    t = LocalTeacher.load(cfg, tok, n)
    batcher = Batcher(lm, t, lm.stop_token_ids())
    rows = DistillCollator(lm, lm.window_seconds)([load_rows(data)[0]])["rows"]
    seen: dict[str, dict] = {}

    def spy(name):
        def hook(module, args, kwargs):
            seen[name] = dict(kwargs)

        return hook

    t.model.register_forward_pre_hook(spy("teacher"), with_kwargs=True)
    lm.model.register_forward_pre_hook(spy("student"), with_kwargs=True)
    completion = tok("The budget review.", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    scored = batcher.score(
        lm.model,
        [Prompt(rows[0]["query"], rows[0]["wave"])],
        [t.prompt_ids(rows[0]["transcript"], rows[0]["query"])],
        [completion],
        full=True,
    )

    transcript = ROWS[0][1]
    teacher_ids = seen["teacher"]["input_ids"][0].tolist()
    teacher_text = tok.decode(teacher_ids)
    assert transcript in teacher_text and QUERY in teacher_text
    assert "<|im_start|>user\n" in teacher_text and teacher_text.index(transcript) < teacher_text.index(
        "<|im_start|>assistant\n"
    )
    assert "<|AUDIO|>" not in teacher_text and "input_features" not in seen["teacher"]
    assert teacher_ids[-len(completion) :] == completion  # the student's ids, not re-tokenized text
    assert teacher_text.endswith("The budget review.<|im_end|>")

    student_text = lm.tokenizer.decode(seen["student"]["input_ids"][0])
    assert seen["student"]["input_features"].abs().sum() > 0 and "<|AUDIO|>" in student_text
    assert transcript not in student_text and QUERY in student_text
    assert seen["student"]["input_ids"][0].tolist()[-len(completion) :] == completion
    # every completion token, the end-of-turn included, is scored
    assert scored.mask.sum().item() == len(completion)
    hidden = t.model.config.hidden_size  # the student is composed around the teacher's LLM
    assert scored.teacher.hidden.shape == scored.student_hidden.shape == (1, len(completion), hidden)


LOSS_CASES = [("reverse-kl", "full"), ("forward-kl", "full"), ("jsd", "full"), ("reverse-kl", "sampled")]


@pytest.mark.parametrize("full_training", [False, True], ids=["lora", "full"])
def test_loss_from_hidden_states_equals_the_loss_from_full_logits(full_training, student, teacher, data):
    """The divergence made from each model's last hidden states and LM head, a chunk of positions
    at a time, gives the loss, statistics and gradients that the models' whole logits give (what
    distill computed before): for every divergence and estimator, LoRA and full fine-tuning (where
    the student's LM head trains too)."""
    from transformers import AutoTokenizer

    from speechsum_cli.data.dataset import load_rows
    from speechsum_cli.families import Prompt, load
    from speechsum_cli.stages.distill import DistillConfig
    from speechsum_cli.stages.distill.batch import Batcher
    from speechsum_cli.stages.distill.checks import check_vocab
    from speechsum_cli.stages.distill.losses import distill_loss
    from speechsum_cli.stages.distill.teacher import LocalTeacher
    from speechsum_cli.stages.distill.trainer import DistillCollator
    from speechsum_cli.training.head import forward_last
    from speechsum_cli.training.model import prepare_model
    from speechsum_cli.training.settings import TrainSettings

    lm = load(str(student), device="cpu", dtype="float32")
    tok = AutoTokenizer.from_pretrained(teacher)
    cfg = DistillConfig(
        data=data, model=str(student), teacher=str(teacher), out=Path("unused"), teacher_device="cpu", chunk_size=3
    )
    n = check_vocab(lm.tokenizer, tok, student="s", teacher="t", family="qwen2_audio")
    t = LocalTeacher.load(cfg, tok, n)
    torch.manual_seed(0)
    model = prepare_model(lm.model, lm.family, TrainSettings(full=full_training, lora_r=4), str(student))
    for name, param in model.named_parameters():  # LoRA B starts at 0: move it, so gradients differ per module
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=0.05)
    model.eval()  # no dropout: both passes must see the same network (gradients still flow)
    trained = [p for p in model.parameters() if p.requires_grad]
    batcher = Batcher(lm, t, lm.stop_token_ids(), chunk_size=3)
    rows = DistillCollator(lm, lm.window_seconds)(list(load_rows(data))[:2])["rows"]
    prompts = [Prompt(r["query"], r["wave"]) for r in rows]
    t_prompts = [t.prompt_ids(r["transcript"], r["query"]) for r in rows]
    completions = [
        tok("The budget review opened at nine.", add_special_tokens=False)["input_ids"] + [tok.eos_token_id],
        tok("Bob sends it.", add_special_tokens=False)["input_ids"] + [tok.eos_token_id, 7, 8],
    ]

    def gradients(loss):
        grads = torch.autograd.grad(loss, trained, allow_unused=True)
        return [torch.zeros_like(p) if g is None else g for p, g in zip(trained, grads)]

    # the reference: both models' whole logits, and the divergence distill computed on them before
    tokens, real = batcher.pad_completions(completions)
    s_inputs = lm.to_model(batcher.student_inputs(prompts, tokens, real))
    with torch.no_grad():
        t_inputs = t.inputs(t_prompts, tokens, real)
        t_logits = forward_last(t.model, t_inputs, tokens.shape[1])[..., :n]
    hidden = lm.model.config.get_text_config().hidden_size
    for kind, estimator in [("reverse-kl", "full"), ("forward-kl", "full"), ("jsd", "full"), ("reverse-kl", "sampled")]:
        scored = batcher.score(model, prompts, t_prompts, completions, full=estimator == "full")
        assert scored.student_hidden.shape[-1] == hidden < n  # hidden states, never [B, C, vocab] logits
        if estimator == "full":
            assert scored.teacher.hidden.shape[-1] == t.model.config.hidden_size
        loss, stats = distill_loss(scored, kind=kind, beta=0.3, estimator=estimator, chunk_size=3)
        new_grads = gradients(loss)

        mask = scored.mask
        s_logits = forward_last(model, s_inputs, tokens.shape[1])[..., :n]
        s_rows, t_rows, picked = s_logits[mask], t_logits[mask], tokens[mask]
        s_logp, t_logp = token_logprobs(s_rows, picked), token_logprobs(t_rows, picked)
        if estimator == "sampled":
            reference = sampled_reverse_kl(s_logp, t_logp).mean()
            reverse = (s_logp - t_logp).mean()
        else:
            reference = token_divergence(s_rows, t_rows, kind, 0.3).mean()
            reverse = token_divergence(s_rows, t_rows).mean()
        case = f"{kind}/{estimator}"
        assert loss.item() == pytest.approx(reference.item(), rel=1e-5, abs=1e-6), case
        assert stats["reverse_kl"] == pytest.approx(reverse.item(), rel=1e-5, abs=1e-6), case
        assert stats["logp/teacher"] == pytest.approx(t_logp.mean().item(), rel=1e-5), case
        assert stats["logp/student"] == pytest.approx(s_logp.mean().item(), rel=1e-5), case
        assert stats["scored_tokens"] == mask.sum().item() == len(completions[0]) + len(completions[1]) - 2
        old_grads = gradients(reference)
        assert sum(bool(g.abs().max() > 0) for g in old_grads) > 1, case
        for a, b in zip(new_grads, old_grads):
            assert torch.allclose(a, b, rtol=1e-4, atol=1e-6), (case, (a - b).abs().max().item())


def test_a_model_that_changes_its_heads_output_falls_back_to_its_full_logits():
    """Gemma 2 soft-caps its logits after the head: hidden states + head would be wrong for it."""
    from transformers import Gemma2Config, Gemma2ForCausalLM

    from speechsum_cli.training.head import HeadStates, forward_last

    config = Gemma2Config(
        vocab_size=50,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=8,
        final_logit_softcapping=2.0,
    )
    torch.manual_seed(0)
    model = Gemma2ForCausalLM(config).eval()
    inputs = {"input_ids": torch.tensor([[1, 5, 7, 9, 11]]), "attention_mask": torch.ones(1, 5, dtype=torch.long)}
    states = HeadStates("teacher")
    with torch.no_grad():
        rows, head = states(model, inputs, 3, 40)
        expected = forward_last(model, inputs, 3)[..., :40]
    assert not states.fused and rows.shape[-1] == 50
    assert torch.allclose(head(rows), expected) and expected.abs().max() <= 2.0


def test_vocabulary_mismatch_errors_before_any_training(tiny_models, tiny_text_lm, data, tmp_path):
    out = tmp_path / "kd"
    result = distill(
        "--data",
        str(data),
        "--student",
        str(tiny_models("qwen2_audio")),
        "--teacher",
        str(tiny_text_lm),
        "--out",
        str(out),
        "--max-steps",
        "1",
    )
    assert result.exit_code == 1
    text = " ".join(result.output.split())
    assert "do not share a vocabulary" in text
    assert "teacher id" in text and "student id" in text
    assert "Pick a teacher of the student's LLM family" in text
    assert f"speechsum compose --encoder WHISPER --llm {tiny_text_lm}" in text
    assert "Parameters" not in result.output and not out.exists()


def test_missing_transcript_column_is_named(student, teacher, tmp_path, speech_wav):
    path = tmp_path / "rows.jsonl"
    path.write_text(json.dumps({"id": "a", "audio": str(speech_wav), "query": QUERY, "summary": "x"}) + "\n")
    result = distill(
        "--data", str(path), "--student", str(student), "--teacher", str(teacher), "--out", str(tmp_path / "kd")
    )
    assert result.exit_code == 1
    text = " ".join(result.output.split())
    assert "has no column 'transcript'" in text and "the teacher reads the transcript" in text


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--loss", "forward-kl", "--estimator", "sampled"], "use it with --loss reverse-kl"),
        (["--loss", "jsd", "--beta", "1"], "--beta must be strictly between 0 and 1"),
        (["--estimator", "sampled", "--lmbda", "0.5"], "--estimator sampled needs the student's own samples"),
    ],
)
def test_inconsistent_flags_are_refused(flags, message, student, teacher, data, tmp_path):
    result = distill(
        "--data", str(data), "--student", str(student), "--teacher", str(teacher), "--out", str(tmp_path / "kd"), *flags
    )
    assert result.exit_code == 1
    assert message in " ".join(result.output.split())


@pytest.mark.slow
@pytest.mark.parametrize(
    "flags",
    [
        ["--loss", "forward-kl", "--lmbda", "0.5", "--sft-alpha", "0.5"],
        ["--loss", "jsd", "--beta", "0.3", "--samples-per-prompt", "2", "--chunk-size", "3"],
        ["--estimator", "sampled", "--merge"],
        ["--teacher-device", "cpu", "--teacher-dtype", "bfloat16", "--grad-accum", "2", "--batch-size", "1"],
    ],
)
def test_other_losses_estimators_and_mixing_train(flags, student, teacher, data, tmp_path):
    out = tmp_path / "kd"
    result = distill(
        "--data",
        str(data),
        "--student",
        str(student),
        "--teacher",
        str(teacher),
        "--out",
        str(out),
        "--max-steps",
        "4",
        "--lr",
        "1e-2",
        "--max-new-tokens",
        "6",
        "--logging-steps",
        "1",
        *flags,
    )
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    counts, metrics = payload["counts"], payload["metrics"]
    assert metrics["global_step"] == 4 and math.isfinite(metrics["train_loss_mean"])
    if "--lmbda" in flags:
        assert counts["off_policy_rows"] > 0 and counts["samples_drawn"] < 4 * 2
    if "--samples-per-prompt" in flags:
        assert counts["samples_drawn"] == 4 * 2 * 2
    if "--merge" in flags:
        assert (out / "config.json").is_file() and not (out / "adapter_config.json").exists()
    if "--teacher-dtype" in flags:
        manifest = json.loads((out / "speechsum.json").read_text())
        assert manifest["teacher"]["dtype"] == "bfloat16" and manifest["teacher"]["device"] == "cpu"
        assert counts["samples_drawn"] == 4 * 2  # 2 micro-batches of 1 row per step


@pytest.mark.slow
def test_ddp_two_processes_on_cpu(student, teacher, data, tmp_path):
    """torchrun with 2 gloo processes (what ``accelerate launch --multi_gpu`` runs): each rank
    samples its own rows, one output, one parameter table."""
    import subprocess
    import sys

    out = tmp_path / "ddp" / "kd"
    out.parent.mkdir()
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        "29527",
        "-m",
        "speechsum_cli",
        "distill",
        "--data",
        str(data),
        "--student",
        str(student),
        "--teacher",
        str(teacher),
        "--out",
        str(out),
        "--max-steps",
        "2",
        "--max-new-tokens",
        "4",
        "--batch-size",
        "1",
        "--logging-steps",
        "1",
    ]
    done = subprocess.run(command, check=False, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stderr.count("Parameters") == 1
    manifest = json.loads((out / "speechsum.json").read_text())
    assert manifest["world_size"] == 2 and manifest["metrics"]["global_step"] == 2
    # one output, no leftovers: beside it only the shared feature cache, holding whole entries
    assert sorted(p.name for p in out.parent.iterdir() if p.name != CACHE_DIRNAME) == ["kd"]
    assert not list((out.parent / CACHE_DIRNAME).glob("**/.tmp-*"))


def test_vocab_check_allows_only_added_tokens_past_the_teacher(tiny_text_lm):
    from transformers import AutoTokenizer

    from speechsum_cli.errors import InputError
    from speechsum_cli.stages.distill.checks import check_vocab

    teacher_tok = AutoTokenizer.from_pretrained(tiny_text_lm)
    student_tok = AutoTokenizer.from_pretrained(tiny_text_lm)
    student_tok.add_special_tokens({"additional_special_tokens": ["<|AUDIO|>"]})
    assert check_vocab(student_tok, teacher_tok, student="s", teacher="t", family="f") == len(teacher_tok)
    teacher_tok.add_tokens(["zzqx"])  # the teacher knows a token the student lacks
    with pytest.raises(InputError, match=r"1 of the teacher's \d+ tokens .* 'zzqx' \(teacher id \d+, student absent\)"):
        check_vocab(student_tok, teacher_tok, student="s", teacher="t", family="f")


def test_reference_summaries_become_the_students_tokens_through_the_end_of_turn(student):
    import numpy as np

    from speechsum_cli.families import Prompt, load
    from speechsum_cli.stages.distill.sampling import reference_completion

    lm = load(str(student), device="cpu", dtype="float32")
    ids = reference_completion(
        lm, Prompt(QUERY, np.zeros(8000, np.float32), answer="Budget review."), lm.stop_token_ids()
    )
    assert lm.tokenizer.decode(ids) == "Budget review.<|im_end|>"
    assert ids[-1] in lm.stop_token_ids()


@pytest.mark.slow
def test_compose_sft_distill_chain_continues_from_the_sft_adapter(student, teacher, data, tmp_path):
    sft_out = tmp_path / "sft"
    done = runner.invoke(
        app,
        [
            "sft",
            "--data",
            str(data),
            "--model",
            str(student),
            "--out",
            str(sft_out),
            "--max-steps",
            "2",
            "--batch-size",
            "2",
        ],
    )
    assert done.exit_code == 0, done.output
    out = tmp_path / "kd"
    result = distill(
        "--data",
        str(data),
        "--student",
        str(sft_out),
        "--teacher",
        str(teacher),
        "--out",
        str(out),
        "--max-steps",
        "2",
        "--max-new-tokens",
        "4",
    )
    assert result.exit_code == 0, result.output
    assert "is an adapter: merged into its base" in result.output
    manifest = json.loads((out / "speechsum.json").read_text())
    assert manifest["base_model"] == str(sft_out.resolve())
    from speechsum_cli.families import load

    assert load(str(out), device="cpu", dtype="float32").family.model_type == "qwen2_audio"


@pytest.mark.slow
def test_long_recordings_chunk_into_one_prompt(student, teacher, tmp_path, speech_wav):
    """12 s of speech on a 5 s student: refused by default, heard whole with --on-long-audio chunk."""
    path = tmp_path / "rows.jsonl"
    path.write_text(
        json.dumps({"id": "long", "audio": str(speech_wav), "transcript": ROWS[0][1], "query": QUERY}) + "\n"
    )
    common = [
        "--data",
        str(path),
        "--student",
        str(student),
        "--teacher",
        str(teacher),
        "--max-steps",
        "1",
        "--max-new-tokens",
        "4",
    ]
    refused = distill(*common, "--out", str(tmp_path / "no"))
    assert refused.exit_code == 1 and "longer than the model's 5 s window" in " ".join(refused.output.split())
    result = distill(*common, "--out", str(tmp_path / "kd"), "--on-long-audio", "chunk")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["counts"]["chunked_long_audio"] == 1


@pytest.mark.slow
def test_a_voxtral_student_distills_too(teacher, data, held, tmp_path):
    """Voxtral's forward trims logits to the completion (logits_to_keep); Qwen2-Audio's cannot."""
    from tests.test_compose import save_tiny_whisper

    whisper = save_tiny_whisper(tmp_path / "whisper", positions=250)
    student = tmp_path / "vox"
    made = runner.invoke(
        app, ["compose", "--family", "voxtral", "--encoder", str(whisper), "--llm", str(teacher), "--out", str(student)]
    )
    assert made.exit_code == 0, made.output
    result = distill(
        "--data",
        str(data),
        "--student",
        str(student),
        "--teacher",
        str(teacher),
        "--out",
        str(tmp_path / "kd"),
        "--eval-data",
        str(held),
        "--max-steps",
        "8",
        "--lr",
        "1e-2",
        "--max-new-tokens",
        "8",
    )
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)["metrics"]
    assert metrics["heldout_reverse_kl_after"] < 0.8 * metrics["heldout_reverse_kl_before"]


def test_teacher_template_errors_surface_before_training(student, teacher, data, tmp_path):
    from transformers import AutoTokenizer

    strict = tmp_path / "strict-teacher"
    tok = AutoTokenizer.from_pretrained(teacher)
    tok.chat_template = (
        "{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not "
        "supported') }}{% endif %}" + tok.chat_template
    )
    tok.save_pretrained(strict)  # no weights: the check must come before the teacher loads
    result = distill(
        "--data",
        str(data),
        "--student",
        str(student),
        "--teacher",
        str(strict),
        "--out",
        str(tmp_path / "kd"),
        "--teacher-system",
        "Be brief.",
    )
    assert result.exit_code == 1
    text = " ".join(result.output.split())
    assert "System role not supported" in text and "drop --teacher-system" in text


# --- every family distills from a text teacher of its own vocabulary ----------------------------


@pytest.fixture(scope="module")
def own_teacher(tiny_models, tmp_path_factory):
    """``own_teacher(model_type)``: the natural text teacher of a family's tiny student — the
    checkpoint itself where transformers also loads it as a causal LM (Gemma 4 reads text alone),
    else a tiny opinionated causal LM with the student's tokenizer (its LM's text-only sibling)."""
    from transformers import AutoTokenizer, GenerationConfig, LlamaConfig, LlamaForCausalLM

    from speechsum_cli.families.text import is_causal_lm_type
    from speechsum_cli.families.tiny import seed_everything

    built: dict[str, Path] = {}

    def build(model_type: str) -> Path:
        student = tiny_models(model_type)
        if is_causal_lm_type(model_type):
            return student
        if model_type not in built:
            out = tmp_path_factory.mktemp(f"teacher-{model_type}")
            tok = AutoTokenizer.from_pretrained(student)
            pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
            config = LlamaConfig(
                vocab_size=len(tok),
                hidden_size=32,
                intermediate_size=64,
                num_hidden_layers=1,
                num_attention_heads=2,
                num_key_value_heads=1,
                max_position_embeddings=4096,
                eos_token_id=tok.eos_token_id,
                pad_token_id=pad,
                initializer_range=0.2,
            )
            seed_everything(3)
            model = LlamaForCausalLM(config)
            model.generation_config = GenerationConfig(eos_token_id=tok.eos_token_id, pad_token_id=pad)
            model.save_pretrained(out)
            tok.save_pretrained(out)
            built[model_type] = out
        return built[model_type]

    return build


@pytest.mark.parametrize("model_type", sorted(FAMILIES))
def test_every_family_distills_from_a_teacher_of_its_vocabulary(model_type, tiny_models, own_teacher, data, tmp_path):
    from transformers import AutoTokenizer

    student, teacher = tiny_models(model_type), own_teacher(model_type)
    out = tmp_path / "kd"
    result = distill(
        "--data",
        str(data),
        "--student",
        str(student),
        "--teacher",
        str(teacher),
        "--out",
        str(out),
        "--max-steps",
        "2",
        "--lr",
        "1e-2",
        "--max-new-tokens",
        "4",
        "--seed",
        "0",
    )
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "speechsum.json").read_text())
    assert manifest["teacher"]["source"] == str(teacher)
    assert manifest["teacher"]["shared_vocabulary"] == len(AutoTokenizer.from_pretrained(student))
    assert manifest["counts"]["samples_drawn"] == 2 * 2
    lora_b = [v for k, v in adapter_state(out).items() if "lora_B" in k]
    assert lora_b and any(v.abs().max() > 0 for v in lora_b)
