"""Where does a ``speechsum distill`` step go, and what does its memory grow with?

For each config (``tiny``: vocab 400, hidden 32; ``small``: vocab ~32k, hidden 256, 2 layers;
``vocab200k``: Phi-4-multimodal's vocabulary size on a width-64 model, 512-token completions) a
teacher Llama and a qwen2_audio student composed around it (same tokenizer, as the vocabulary
check requires) are built offline; espeak-ng speech gives the prompts. Worker processes then run
``--steps`` distillation steps through the stage's own pieces and time them apart:

* generation: ``sample_completions`` (the student samples, no gradients) — or, with
  ``fixed_tokens`` (vocab200k), the same random completions of that length in every process, so
  every variant scores exactly the same tokens;
* teacher scoring: ``LocalTeacher.score`` (teacher forward under inference mode);
* student update: student forward + divergence + backward + optimizer step.

Peak memory is the process's resident high-water mark (``VmHWM``) during the student update,
reset right before it (``/proc/self/clear_refs``), minus the resident size at that moment: what
the update adds. Each variant runs in a fresh process:

* ``logits``: both models' full ``[B, L, V]`` logits, the divergence over them in checkpointed
  chunks of ``--chunk-size`` (what distill did before it worked from hidden states);
* ``hidden, chunk N``: what distill does now — last hidden states + LM head, logits made N
  positions at a time and recomputed in backward (N = 0: every position in one chunk).

The loss printed is the first step's (before any update, so the same weights in every process):
it must agree across variants to float tolerance. On a shared CPU machine times are indicative;
the memory figures are stable.

    python benchmarks/distill_step.py                      # tiny, small
    python benchmarks/distill_step.py --configs vocab200k  # the memory sweep at 200k tokens
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

CONFIGS = {
    "tiny": {"vocab": 400, "hidden": 32, "layers": 1, "batch": 2, "max_new_tokens": 16, "chunks": (64,)},
    "small": {"vocab": 32000, "hidden": 256, "layers": 2, "batch": 4, "max_new_tokens": 64, "chunks": (64,)},
    "vocab200k": {
        "vocab": 200000,
        "hidden": 64,
        "layers": 1,
        "batch": 2,
        "max_new_tokens": 512,
        "fixed_tokens": 512,
        "chunks": (512, 128, 32),
    },
}
TRANSCRIPTS = [
    "Alice opened the budget review at nine.",
    "Bob sends the contract to Northwind by Friday.",
    "The team hires three engineers in March.",
    "Carol drafts the proposal and Dan books the room.",
]
TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def build(name: str, root: Path) -> tuple[Path, Path, Path]:
    """(teacher, student, data) for one config under ``root``."""
    from transformers import (
        GenerationConfig,
        LlamaConfig,
        LlamaForCausalLM,
        WhisperConfig,
        WhisperForConditionalGeneration,
    )

    from speechsum_cli.families.tiny import seed_everything, tiny_tokenizer
    from speechsum_cli.stages.compose import ComposeConfig
    from speechsum_cli.stages.compose import run as compose

    spec = CONFIGS[name]
    teacher, student, data = root / "teacher", root / "student", root / "data"
    tok = tiny_tokenizer(
        ["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        chat_template=TEMPLATE,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
    )
    if spec["vocab"] > len(tok):  # a realistic vocabulary size
        tok = widened(tok, spec["vocab"])
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=spec["hidden"],
        intermediate_size=2 * spec["hidden"],
        num_hidden_layers=spec["layers"],
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        initializer_range=0.2,
    )
    seed_everything(0)
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    model.save_pretrained(teacher)
    tok.save_pretrained(teacher)
    whisper = WhisperConfig(
        d_model=64,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=128,
        decoder_ffn_dim=64,
        num_mel_bins=80,
        max_source_positions=250,
        max_target_positions=64,
        vocab_size=100,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        decoder_start_token_id=3,
    )
    WhisperForConditionalGeneration(whisper).save_pretrained(root / "whisper")
    compose(ComposeConfig(encoder=str(root / "whisper"), llm=str(teacher), family="qwen2_audio", out=student))
    data.mkdir()
    rows = []
    for i, text in enumerate(TRANSCRIPTS):
        subprocess.run(["espeak-ng", "-w", str(data / f"r{i}.wav"), text], check=True)
        rows.append({"id": f"r{i}", "audio": f"r{i}.wav", "transcript": text, "query": "Summarize the recording."})
    (data / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return teacher, student, data / "rows.jsonl"


def widened(tok: Any, size: int) -> Any:
    """``tok`` with plain vocabulary entries appended up to ``size`` ids (text never produces
    them; they make the output layer and the divergence as wide as a real vocabulary's)."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    data = json.loads(tok.backend_tokenizer.to_str())
    vocab = data["model"]["vocab"]
    next_id = max(vocab.values()) + 1
    for i in range(next_id, size):
        vocab[f"<w{i}>"] = i
    wide = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(json.dumps(data)), eos_token=tok.eos_token, pad_token=tok.pad_token
    )
    wide.chat_template = tok.chat_template
    return wide


def _rss_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def fixed_completions(rows: int, length: int, vocab: int, stop_id: int) -> list[list[int]]:
    """The same random completions in every process: ``length`` ids ending with the stop token."""
    import random

    rng = random.Random(0)
    return [[rng.randrange(vocab // 2, vocab) for _ in range(length - 1)] + [stop_id] for _ in range(rows)]


def worker(args: argparse.Namespace) -> None:
    """Run ``--steps`` timed steps in this process; print one JSON line."""
    import torch

    from speechsum_cli.data.dataset import load_rows
    from speechsum_cli.families import GenerationSettings, Prompt, load
    from speechsum_cli.stages.distill import DistillConfig
    from speechsum_cli.stages.distill.batch import Batcher
    from speechsum_cli.stages.distill.checks import check_vocab
    from speechsum_cli.stages.distill.losses import completion_mask, distill_loss
    from speechsum_cli.stages.distill.sampling import sample_completions
    from speechsum_cli.stages.distill.scores import Scored
    from speechsum_cli.stages.distill.teacher import LocalTeacher, torch_where_scorable
    from speechsum_cli.stages.distill.trainer import DistillCollator
    from speechsum_cli.teacher import load_teacher_tokenizer
    from speechsum_cli.training.model import prepare_model

    torch.set_num_threads(max(1, os.cpu_count() or 1))
    cfg = DistillConfig(
        data=Path(args.data),
        model=args.student,
        teacher=args.teacher,
        out=Path("unused"),
        chunk_size=args.chunk_size,
        teacher_device="cpu",
    )
    lm = load(args.student, device="cpu", dtype="float32")
    t_tok = load_teacher_tokenizer(args.teacher)
    n = check_vocab(lm.tokenizer, t_tok, student=args.student, teacher=args.teacher, family="qwen2_audio")
    teacher = LocalTeacher.load(cfg, t_tok, n)
    torch.manual_seed(0)
    model = prepare_model(lm.model, lm.family, cfg.train, args.student)
    model.eval()  # no LoRA dropout: the first step's loss is comparable across processes
    optim = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    batcher = Batcher(lm, teacher, lm.stop_token_ids(), args.chunk_size)
    if args.mode == "logits":  # the models' full logits, as distill did before
        batcher.student_states.fused = teacher.states.fused = False
    rows = DistillCollator(lm, lm.window_seconds)(list(load_rows(args.data)))["rows"][: args.batch]
    prompts = [Prompt(r["query"], r["wave"]) for r in rows]
    t_prompts = [teacher.prompt_ids(r["transcript"], r["query"]) for r in rows]
    times: dict[str, list[float]] = {"generation": [], "teacher": [], "student_update": []}
    peaks, tokens, first_loss = [], 0, None
    for step in range(args.steps + 1):  # step 0 warms up, not counted
        t0 = time.perf_counter()
        if args.fixed_tokens:
            completions = fixed_completions(len(rows), args.fixed_tokens, n, batcher.stop_ids[0])
        else:
            completions, _ = sample_completions(model, lm, prompts, GenerationSettings(args.max_new_tokens, 1.0, 1.0))
        t1 = time.perf_counter()
        padded, real = batcher.pad_completions(completions)
        scores = teacher.score(t_prompts, padded, real, full=True)
        t2 = time.perf_counter()
        Path("/proc/self/clear_refs").write_text("5")
        base = _rss_kb("VmRSS")
        mask = completion_mask(padded, batcher.stop_ids, real) & (padded < n)
        hidden, head = batcher.student_hidden(model, prompts, padded, real)
        scored = Scored(hidden, head, scores, torch_where_scorable(padded, padded < n), mask, 0)
        loss, _ = distill_loss(scored, kind="reverse-kl", beta=0.5, estimator="full", chunk_size=args.chunk_size)
        loss.backward()
        optim.step()
        optim.zero_grad()
        t3 = time.perf_counter()
        first_loss = float(loss) if first_loss is None else first_loss
        if step:
            times["generation"].append(t1 - t0)
            times["teacher"].append(t2 - t1)
            times["student_update"].append(t3 - t2)
            peaks.append(_rss_kb("VmHWM") - base)
            tokens += int(mask.sum())
    median = {k: sorted(v)[len(v) // 2] for k, v in times.items()}
    print(
        json.dumps(
            {
                "times": median,
                "peak_update_mb": max(peaks) / 1024,
                "tokens_per_step": tokens / args.steps,
                "vocab": n,
                "loss": first_loss,
            }
        )
    )


def run_worker(
    args: argparse.Namespace, spec: dict[str, Any], paths: tuple[Path, Path, Path], mode: str, chunk: int
) -> dict[str, Any]:
    teacher, student, data = paths
    out = subprocess.run(
        [
            sys.executable,
            __file__,
            "--worker",
            "--student",
            str(student),
            "--teacher",
            str(teacher),
            "--data",
            str(data),
            "--steps",
            str(args.steps),
            "--chunk-size",
            str(chunk),
            "--mode",
            mode,
            "--batch",
            str(spec["batch"]),
            "--max-new-tokens",
            str(spec["max_new_tokens"]),
            "--fixed-tokens",
            str(spec.get("fixed_tokens", 0)),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def report(name: str, spec: dict[str, Any], results: dict[tuple[str, int], dict[str, Any]]) -> None:
    """The step's time split (the first hidden-state variant), then every variant's memory and loss."""
    first = next(r for (mode, _), r in results.items() if mode == "hidden")
    t = first["times"]
    total = sum(t.values())
    print(
        f"{name}: vocab {first['vocab']}, batch {spec['batch']}, {first['tokens_per_step']:.0f} completion tokens/step"
    )
    for part, seconds in t.items():
        print(f"  {part:15s} {seconds:7.3f} s  {100 * seconds / total:5.1f}%")
    reference = results[("logits", spec["chunks"][0])]
    print(f"  {'variant':22s} {'update peak MB':>14s} {'update s':>9s}  {'loss':>12s}  loss - logits' loss")
    for (mode, chunk), r in results.items():
        label = "logits (before)" if mode == "logits" else f"hidden, chunk {chunk or 'all'}"
        print(
            f"  {label:22s} {r['peak_update_mb']:14.1f} {r['times']['student_update']:9.3f}  "
            f"{r['loss']:12.8f}  {r['loss'] - reference['loss']:+.2e}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default="tiny,small")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--chunk-size", type=int, default=64, help=argparse.SUPPRESS)
    parser.add_argument("--mode", default="hidden", help=argparse.SUPPRESS)
    parser.add_argument("--student"), parser.add_argument("--teacher"), parser.add_argument("--data")
    parser.add_argument("--batch", type=int, default=2), parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--fixed-tokens", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from speechsum_cli.cli.common import quiet_libraries

    quiet_libraries()
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.configs.split(","):
            spec = CONFIGS[name]
            root = Path(tmp) / name
            root.mkdir()
            paths = build(name, root)
            variants = [("logits", spec["chunks"][0]), ("hidden", 0)] + [("hidden", c) for c in spec["chunks"]]
            results = {(mode, chunk): run_worker(args, spec, paths, mode, chunk) for mode, chunk in variants}
            report(name, spec, results)


if __name__ == "__main__":
    main()
