"""Where does a ``speechsum distill`` step go, and what does the chunked divergence save?

For each config (``tiny``: vocab 400, hidden 32; ``small``: vocab ~32k, hidden 256, 2 layers) a
teacher Llama and a qwen2_audio student composed around it (same tokenizer, as the vocabulary
check requires) are built offline; espeak-ng speech gives the prompts. A worker process then runs
``--steps`` distillation steps through the stage's own pieces and times them apart:

* generation: ``sample_completions`` (the student samples, no gradients);
* teacher scoring: ``Batcher.score_teacher`` (teacher forward under inference mode);
* student update: student forward + divergence + backward + optimizer step.

Peak memory is the process's resident high-water mark (``VmHWM``) during the student update,
reset right before it (``/proc/self/clear_refs``), minus the resident size at that moment: what
the update adds. It is measured once with the divergence in one piece (``--chunk-size 0``) and
once chunked, each in a fresh process. On a shared CPU machine times are indicative; the memory
figures are stable. The small config's student has no ``logits_to_keep`` (Qwen2-Audio), so its
full ``[B, L, V]`` logits are in both figures; the difference is the divergence's own memory.

    python benchmarks/distill_step.py
    python benchmarks/distill_step.py --configs small --steps 5 --chunk-size 64
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

CONFIGS = {
    "tiny": {"vocab": 400, "hidden": 32, "layers": 1, "batch": 2, "max_new_tokens": 16},
    "small": {"vocab": 32000, "hidden": 256, "layers": 2, "batch": 4, "max_new_tokens": 64},
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
    tok = tiny_tokenizer(["<|endoftext|>", "<|im_start|>", "<|im_end|>"], chat_template=TEMPLATE,
                         eos_token="<|im_end|>", pad_token="<|endoftext|>")
    if spec["vocab"] > len(tok):  # a realistic vocabulary size: plain added word tokens
        tok.add_tokens([f"w{i}" for i in range(spec["vocab"] - len(tok))])
    config = LlamaConfig(vocab_size=len(tok), hidden_size=spec["hidden"], intermediate_size=2 * spec["hidden"],
                         num_hidden_layers=spec["layers"], num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=4096, eos_token_id=tok.eos_token_id,
                         pad_token_id=tok.pad_token_id, initializer_range=0.2)
    seed_everything(0)
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    model.save_pretrained(teacher)
    tok.save_pretrained(teacher)
    whisper = WhisperConfig(d_model=64, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
                            decoder_attention_heads=2, encoder_ffn_dim=128, decoder_ffn_dim=64, num_mel_bins=80,
                            max_source_positions=250, max_target_positions=64, vocab_size=100,
                            pad_token_id=0, bos_token_id=1, eos_token_id=2, decoder_start_token_id=3)
    WhisperForConditionalGeneration(whisper).save_pretrained(root / "whisper")
    compose(ComposeConfig(encoder=str(root / "whisper"), llm=str(teacher), family="qwen2_audio", out=student))
    data.mkdir()
    rows = []
    for i, text in enumerate(TRANSCRIPTS):
        subprocess.run(["espeak-ng", "-w", str(data / f"r{i}.wav"), text], check=True)
        rows.append({"id": f"r{i}", "audio": f"r{i}.wav", "transcript": text, "query": "Summarize the recording."})
    (data / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return teacher, student, data / "rows.jsonl"


def _rss_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def worker(args: argparse.Namespace) -> None:
    """Run ``--steps`` timed steps in this process; print one JSON line."""
    import torch

    from speechsum_cli.data.dataset import load_rows
    from speechsum_cli.families import Prompt, load
    from speechsum_cli.training.model import prepare_model
    from speechsum_cli.stages.distill import (
        Batcher,
        DistillCollator,
        DistillConfig,
        Scored,
        check_vocab,
        completion_mask,
        distill_loss,
        load_teacher,
        load_teacher_tokenizer,
        sample_completions,
        torch_where_scorable,
    )

    torch.set_num_threads(max(1, os.cpu_count() or 1))
    cfg = DistillConfig(data=Path(args.data), model=args.student, teacher=args.teacher, out=Path("unused"),
                        chunk_size=args.chunk_size, teacher_device="cpu")
    lm = load(args.student, device="cpu", dtype="float32")
    t_tok = load_teacher_tokenizer(args.teacher)
    n = check_vocab(lm.tokenizer, t_tok, student=args.student, teacher=args.teacher, family="qwen2_audio")
    teacher = load_teacher(cfg, t_tok)
    torch.manual_seed(0)
    model = prepare_model(lm.model, lm.family, cfg.train, args.student)
    optim = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    batcher = Batcher(lm, teacher, n, lm.stop_token_ids(), args.chunk_size)
    rows = DistillCollator(lm, lm.window_seconds)(list(load_rows(args.data)))["rows"][:args.batch]
    prompts = [Prompt(r["query"], r["wave"]) for r in rows]
    t_prompts = [teacher.prompt_ids(r["transcript"], r["query"]) for r in rows]
    times = {"generation": [], "teacher": [], "student_update": []}
    peaks, tokens = [], 0
    for step in range(args.steps + 1):  # step 0 warms up, not counted
        t0 = time.perf_counter()
        completions, _ = sample_completions(model, lm, prompts, temperature=1.0, top_p=1.0,
                                            max_new_tokens=args.max_new_tokens, stop_ids=batcher.stop_ids)
        t1 = time.perf_counter()
        padded, real = batcher.pad_completions(completions)
        t_logits, t_logp = batcher.score_teacher(t_prompts, padded, real, full=True)
        t2 = time.perf_counter()
        Path("/proc/self/clear_refs").write_text("5")
        base = _rss_kb("VmRSS")
        mask = completion_mask(padded, batcher.stop_ids, real) & (padded < n)
        s_logits = batcher.student_logits(model, prompts, padded, real)
        scored = Scored(s_logits, t_logits, t_logp, torch_where_scorable(padded, padded < n), mask, 0)
        loss, _ = distill_loss(scored, kind="reverse-kl", beta=0.5, estimator="full", chunk_size=args.chunk_size)
        loss.backward()
        optim.step()
        optim.zero_grad()
        t3 = time.perf_counter()
        if step:
            times["generation"].append(t1 - t0)
            times["teacher"].append(t2 - t1)
            times["student_update"].append(t3 - t2)
            peaks.append(_rss_kb("VmHWM") - base)
            tokens += int(mask.sum())
    median = {k: sorted(v)[len(v) // 2] for k, v in times.items()}
    print(json.dumps({"times": median, "peak_update_mb": max(peaks) / 1024, "tokens_per_step": tokens / args.steps,
                      "vocab": n}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default="tiny,small")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--chunk-size", type=int, default=64)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--student"), parser.add_argument("--teacher"), parser.add_argument("--data")
    parser.add_argument("--batch", type=int, default=2), parser.add_argument("--max-new-tokens", type=int, default=16)
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
            teacher, student, data = build(name, root)
            results = {}
            for chunk in (0, args.chunk_size):
                out = subprocess.run(
                    [sys.executable, __file__, "--worker", "--student", str(student), "--teacher", str(teacher),
                     "--data", str(data), "--steps", str(args.steps), "--chunk-size", str(chunk),
                     "--batch", str(spec["batch"]), "--max-new-tokens", str(spec["max_new_tokens"])],
                    check=True, capture_output=True, text=True)
                results[chunk] = json.loads(out.stdout.strip().splitlines()[-1])
            whole, chunked = results[0], results[args.chunk_size]
            t = chunked["times"]
            total = sum(t.values())
            print(f"{name}: vocab {whole['vocab']}, batch {spec['batch']}, "
                  f"{chunked['tokens_per_step']:.0f} completion tokens/step")
            for part, seconds in t.items():
                print(f"  {part:15s} {seconds:7.3f} s  {100 * seconds / total:5.1f}%")
            ratio = (f"ratio {whole['peak_update_mb'] / chunked['peak_update_mb']:.2f}"
                     if min(whole["peak_update_mb"], chunked["peak_update_mb"]) >= 8 else
                     "too small to compare: the allocator reuses freed memory")
            print(f"  peak memory of the student update: {whole['peak_update_mb']:.1f} MB unchunked, "
                  f"{chunked['peak_update_mb']:.1f} MB with --chunk-size {args.chunk_size} ({ratio}); "
                  f"update time ratio chunked/unchunked "
                  f"{t['student_update'] / max(whole['times']['student_update'], 1e-9):.2f}")


if __name__ == "__main__":
    main()
