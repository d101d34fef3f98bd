"""Transcription WER of checkpoints on every held-out item of a mini run, with substitutions,
deletions and insertions (RESULTS.md, "What run 5 changed"). Greedy, the eval's transcription
prompt and normalization. Experiment code, not part of the package.

    python recipes/mini/experiments/wer_breakdown.py runs/mini warmup sft kd dpo
"""

import json
import sys
from pathlib import Path

import jiwer

from speechsum_cli.data.audio import load_audio
from speechsum_cli.families import GenerationSettings, Prompt, load
from speechsum_cli.metrics.wer import normalize
from speechsum_cli.stages.evaluate import ASR_QUERY

work = Path(sys.argv[1])
rows = [json.loads(line) for line in (work / "corpus/test.jsonl").read_text().splitlines()]
refs = [normalize(r["transcript"]) for r in rows]
for name in sys.argv[2:]:
    lm = load(str(work / name), device="cpu", dtype="float32")
    prompts = [Prompt(ASR_QUERY, audio=load_audio(str(work / "corpus" / r["audio"]), lm.sampling_rate)) for r in rows]
    hyps = [normalize(text) for text in lm.generate(prompts, GenerationSettings(max_new_tokens=96))]
    o = jiwer.process_words(refs, hyps)
    print(
        f"{name}: WER {o.wer:.3f} on {len(rows)} items; substitutions {o.substitutions}, deletions {o.deletions}, "
        f"insertions {o.insertions} of {sum(len(r.split()) for r in refs)} reference words",
        flush=True,
    )
