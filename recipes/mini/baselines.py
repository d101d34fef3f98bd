"""The two reference systems of the mini table, written as ``speechsum eval --predictions`` files.

    python recipes/mini/baselines.py --data TEST.jsonl --teacher DIR --whisper DIR --out DIR \
        [--teacher-system TEXT] [--max-new-tokens 96] [--batch-size 8]

  OUT/teacher.jsonl   id, prediction: the text teacher reading the *reference transcript* (the
                      upper bound: what the student would say if it heard perfectly)
  OUT/cascade.jsonl   id, prediction, transcription: Whisper transcribes the audio, then the same
                      teacher summarizes Whisper's transcript (the pipeline an audio LLM replaces)
  OUT/teacher-sft.jsonl  with --tuned-teacher DIR: that teacher (``speechsum sft`` in text mode)
                      reading the reference transcript, the teacher distill and pairs then use
  OUT/cascade-sft.jsonl  with --tuned-teacher DIR: Whisper, then the tuned teacher summarizes its
                      transcript (the strongest cascade a user could build from the same parts)

Audio longer than Whisper's 30 s window is transcribed window by window (cut at pauses by the
toolkit's own ``iter_chunks``, every sample heard once) and the windows' transcripts joined.

Both ask the teacher exactly what ``speechsum distill`` asks it (its ``Teacher`` prompt: the
transcript, then the row's query, in the teacher's own chat template, with ``--teacher-system``),
and decode greedily like ``speechsum eval`` does for checkpoints, so the rows compare like for like.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

WHISPER_RATE = 16_000
WHISPER_WINDOW = 30.0
"""Whisper's audio window in seconds; longer audio is transcribed window by window."""
WHISPER_TOKENS = 224
"""Decoding budget per window (30 s of fast speech is ~110 tokens; Whisper's own cap is 448)."""


def read_rows(path: Path) -> list[dict[str, Any]]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    for row in rows:
        audio = Path(row["audio"])
        row["audio"] = str(audio if audio.is_absolute() else path.parent / audio)
    return rows


def batches(items: list[Any], size: int) -> list[list[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def whisper_windows(rows: list[dict[str, Any]]) -> list[tuple[int, Any]]:
    """(row index, samples) of every <= 30 s window of every row's audio, in order."""
    from speechsum_cli.data.audio import iter_chunks

    return [
        (i, chunk.samples)
        for i, row in enumerate(rows)
        for chunk in iter_chunks(row["audio"], WHISPER_RATE, WHISPER_WINDOW)
    ]


def transcribe(whisper_dir: str, rows: list[dict[str, Any]], batch_size: int) -> list[str]:
    """Whisper's greedy English transcription of every row's audio, window by window, joined."""
    import torch
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    processor = WhisperProcessor.from_pretrained(whisper_dir)
    model = WhisperForConditionalGeneration.from_pretrained(whisper_dir).eval()
    english_only = not model.config.vocab_size > 51864
    kwargs = {} if english_only else {"language": "en", "task": "transcribe"}
    parts: list[list[str]] = [[] for _ in rows]
    for chunk in batches(whisper_windows(rows), batch_size):
        enc = processor(
            [wave for _, wave in chunk], sampling_rate=WHISPER_RATE, return_tensors="pt", return_attention_mask=True
        )
        with torch.inference_mode():
            ids = model.generate(
                enc.input_features, attention_mask=enc.attention_mask, max_new_tokens=WHISPER_TOKENS, **kwargs
            )
        for (owner, _), text in zip(chunk, processor.batch_decode(ids, skip_special_tokens=True)):
            parts[owner].append(text.strip())
    return [" ".join(t for t in texts if t) for texts in parts]


def summarize_text(
    teacher_dir: str, system: str | None, pairs: list[tuple[str, str]], max_new_tokens: int, batch_size: int
) -> list[str]:
    """The teacher's greedy answer to each (transcript, query), in distill's prompt format."""
    import torch
    from transformers import AutoTokenizer

    from speechsum_cli.families import load_text_model
    from speechsum_cli.teacher import Teacher

    tok = AutoTokenizer.from_pretrained(teacher_dir, padding_side="left")
    # a full checkpoint, or a text-mode sft adapter (merged into its base, named relative to it)
    model = load_text_model(teacher_dir, dtype="auto", device="cpu")
    teacher = Teacher(model, tok, teacher_dir, system)
    pad = teacher.pad_id
    out: list[str] = []
    for chunk in batches(pairs, batch_size):
        prompts = [teacher.render(transcript, query) for transcript, query in chunk]
        enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.inference_mode():
            ids = model.generate(
                **enc,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                temperature=None,
                top_p=None,
                top_k=None,
                eos_token_id=teacher.end_id,
                pad_token_id=pad,
            )
        new = ids[:, enc["input_ids"].shape[1] :]
        out += [t.strip() for t in tok.batch_decode(new, skip_special_tokens=True)]
    return out


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(row) + "\n" for row in rows))
    tmp.replace(path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="test.jsonl: id, audio, transcript, query")
    parser.add_argument("--teacher", required=True, help="text chat LM checkpoint dir")
    parser.add_argument("--whisper", required=True, help="WhisperForConditionalGeneration checkpoint dir")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--tuned-teacher", default=None, help="the text-mode sft of --teacher (adapter or full dir)")
    parser.add_argument("--teacher-system", default=None, help="system turn (as distill --teacher-system)")
    parser.add_argument("--max-new-tokens", type=int, default=96)
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()

    rows = read_rows(args.data)
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    heard = transcribe(args.whisper, rows, args.batch_size)
    t_asr = time.time() - t0
    both = [(row["transcript"], row["query"]) for row in rows] + [(h, row["query"]) for h, row in zip(heard, rows)]
    answers = summarize_text(args.teacher, args.teacher_system, both, args.max_new_tokens, args.batch_size)
    teacher, cascade = answers[: len(rows)], answers[len(rows) :]
    write_jsonl(args.out / "teacher.jsonl", [{"id": r["id"], "prediction": p} for r, p in zip(rows, teacher)])
    write_jsonl(
        args.out / "cascade.jsonl",
        [{"id": r["id"], "prediction": p, "transcription": h} for r, p, h in zip(rows, cascade, heard)],
    )
    written = [args.out / "teacher.jsonl", args.out / "cascade.jsonl"]
    if args.tuned_teacher:
        tuned_answers = summarize_text(
            args.tuned_teacher, args.teacher_system, both, args.max_new_tokens, args.batch_size
        )
        tuned, tuned_cascade = tuned_answers[: len(rows)], tuned_answers[len(rows) :]
        write_jsonl(args.out / "teacher-sft.jsonl", [{"id": r["id"], "prediction": p} for r, p in zip(rows, tuned)])
        write_jsonl(
            args.out / "cascade-sft.jsonl",
            [{"id": r["id"], "prediction": p, "transcription": h} for r, p, h in zip(rows, tuned_cascade, heard)],
        )
        written += [args.out / "teacher-sft.jsonl", args.out / "cascade-sft.jsonl"]
    print(
        f"{len(rows)} rows: transcribed in {t_asr:.0f} s, summarized in {time.time() - t0 - t_asr:.0f} s "
        f"-> {', '.join(map(str, written))}",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
