"""Does a text teacher copy the transcript it reads when asked to transcribe? Its greedy answer to
the transcription prompt, with the transcript in its context (as distill's teacher sees it), scored
by WER against that transcript, on the last N transcription rows (RESULTS.md, "What run 5
changed"). Experiment code, not part of the package.

    python recipes/mini/experiments/teacher_copy.py runs/mini/teacher-sft runs/mini/corpus/asr.jsonl 20
"""

import json
import sys

import torch

from speechsum_cli.families import load_text_model
from speechsum_cli.metrics.wer import error_rates
from speechsum_cli.prompts.styles import prompt_data
from speechsum_cli.teacher import Teacher, load_teacher_tokenizer

path, data, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
rows = [json.loads(line) for line in open(data)][-n:]
tokenizer = load_teacher_tokenizer(path)
model = load_text_model(path, dtype=torch.float32, device="cpu")
teacher = Teacher(model, tokenizer, path, prompt_data()["faithfulness"])
answers = []
for row in rows:
    enc = tokenizer([teacher.render(row["transcript"], row["query"])], return_tensors="pt", add_special_tokens=False)
    out = model.generate(**enc, max_new_tokens=64, do_sample=False)
    answers.append(tokenizer.decode(out[0, enc["input_ids"].shape[1] :], skip_special_tokens=True))
print(
    f"{path}: WER {error_rates([r['transcript'] for r in rows], answers).wer:.3f} against the transcript it reads "
    f"({len(rows)} rows); e.g. {answers[0][:120]!r}"
)
