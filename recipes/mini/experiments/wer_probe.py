"""Where transcription is lost (RESULTS.md, "Against the two earlier runs"): on 12 mini test items,
the WER of the aligned projector alone (greedy CTC) and of the LM's own transcript after each named
stage. Experiment code, not part of the package.

    python recipes/mini/experiments/wer_probe.py runs/mini warmup sft
"""

import json
import sys
from pathlib import Path

from datasets import Dataset

from speechsum_cli.data.audio import load_audio
from speechsum_cli.families import GenerationSettings, Prompt, load
from speechsum_cli.families.ctc_head import load_head
from speechsum_cli.metrics.wer import error_rates
from speechsum_cli.stages.align import heldout_wer
from speechsum_cli.stages.evaluate import ASR_QUERY
from speechsum_cli.training.alignment import encode_clips

work = Path(sys.argv[1])
rows = [json.loads(line) for line in (work / "corpus/test.jsonl").read_text().splitlines()][:12]
for r in rows:
    r["audio"] = str(work / "corpus" / r["audio"])
# 1. the projector alone (CTC greedy), on the same 12 items
lm = load(str(work / "aligned"), device="cpu", dtype="float32")
lm.compressor.remove()
head, vocab = load_head(work / "aligned", lm.model.get_input_embeddings().weight)
clips = encode_clips(lm, Dataset.from_list(rows), lm.window_seconds, label="t", show_progress=False)
w, share, texts = heldout_wer(lm, head, clips, vocab, "cpu", 8)
oov = sum(1 for c in clips for t in c.target if t not in set(vocab.ids)) / sum(len(c.target) for c in clips)
print(
    f"aligned projector alone, CTC greedy: WER {w:.3f} (tokens outside the CTC vocabulary: {oov:.3f}); e.g. "
    f"{texts[0][:100]!r}"
)
# 2. the LM after the warm-up and after sft
for name in sys.argv[2:]:
    lm = load(str(work / name), device="cpu", dtype="float32")
    outs = []
    for r in rows:
        outs += lm.generate(
            [Prompt(ASR_QUERY, audio=load_audio(r["audio"], lm.sampling_rate))], GenerationSettings(max_new_tokens=96)
        )
    print(
        f"{name}: LM transcription WER {error_rates([r['transcript'] for r in rows], outs).wer:.3f}; e.g. "
        f"{outs[0][:100]!r}"
    )
print("reference e.g.", rows[0]["transcript"][:100])
