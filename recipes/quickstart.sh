#!/usr/bin/env bash
# The whole speechsum recipe, offline on a CPU, in a few minutes (3.5 min measured on 2 cores):
#   speech corpus (espeak-ng) -> tiny models -> synth -> sft -> distill -> pairs -> dpo -> eval -> summarize
#
#   bash recipes/quickstart.sh                      # outputs under runs/quickstart
#   WORK=/tmp/qs QUICKSTART_SIZE=test bash recipes/quickstart.sh   # the CI-sized run (~1.5 min)
#
# Every stage is skipped when its output already exists, so a re-run resumes; delete WORK to start over.
# The models are tiny and RANDOM: they write nonsense. The quickstart proves the pipeline runs end to
# end on your machine, not that it summarizes. The "LLM" for synth and the judges is
# examples/extractive_llm_server.py, a RULE-BASED stand-in (no neural model) on 127.0.0.1; for real
# data pass your own endpoint and model (--base-url/--llm for synth, --judge-base-url/--judge-model for pairs and eval), see
# recipes/paper.sh.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WORK="${WORK:-runs/quickstart}"
PYTHON="${PYTHON:-python}"
SPEECHSUM="${SPEECHSUM:-$PYTHON -m speechsum_cli}"
QUICKSTART_SIZE="${QUICKSTART_SIZE:-full}"

case "$QUICKSTART_SIZE" in
  full) SYNTH_N=16; SFT_STEPS=24; KD_STEPS=8; DPO_STEPS=8; GEN_TOKENS=48; LR=1e-3 ;;
  test) SYNTH_N=8;  SFT_STEPS=2;  KD_STEPS=1; DPO_STEPS=1; GEN_TOKENS=12; LR=1e-3 ;;
  *) echo "QUICKSTART_SIZE must be 'full' or 'test', not '$QUICKSTART_SIZE'" >&2; exit 2 ;;
esac

export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_HUB_DISABLE_PROGRESS_BARS=1 TOKENIZERS_PARALLELISM=false
mkdir -p "$WORK"
WORK="$(cd "$WORK" && pwd)"
CACHE="$WORK/llm-cache"   # the LLM response cache stays inside WORK

say() { printf '\n== %s\n' "$*" >&2; }
steps() { if [ "$1" = 1 ]; then echo "1 step"; else echo "$1 steps"; fi; }
done_already() { [ -e "$1" ] && { echo "   $1 exists: skipped (delete it to redo)" >&2; return 0; }; return 1; }
T0=$(date +%s)

# --- a local OpenAI-compatible "LLM" (rule-based stand-in), stopped on exit whatever happens
SERVER_PID=""
cleanup() {
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

say "0/8 speech corpus: examples/transcripts -> espeak-ng wavs"
done_already "$WORK/corpus/test.jsonl" || {
  rm -rf "$WORK/corpus"
  $PYTHON "$ROOT/examples/render_corpus.py" "$WORK/corpus.tmp" && mv "$WORK/corpus.tmp" "$WORK/corpus"
}

say "1/8 tiny random models: Whisper encoder + Llama text LM (the teacher), student composed around the teacher's LLM"
done_already "$WORK/models/text-lm" || {
  rm -rf "$WORK/models.tmp" && $PYTHON "$ROOT/examples/make_tiny_models.py" "$WORK/models.tmp" && mv "$WORK/models.tmp" "$WORK/models"
}
done_already "$WORK/models/student" ||
  $SPEECHSUM compose --encoder "$WORK/models/whisper" --llm "$WORK/models/text-lm" --family qwen2_audio \
    --out "$WORK/models/student"

PORT=$($PYTHON -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
BASE_URL="http://127.0.0.1:$PORT/v1"
LLM_MODEL=extractive-rules
say "starting the rule-based stand-in LLM (examples/extractive_llm_server.py, NOT a model) on $BASE_URL"
$PYTHON "$ROOT/examples/extractive_llm_server.py" --host 127.0.0.1 --port "$PORT" 2>"$WORK/llm-server.log" &
SERVER_PID=$!
echo "$SERVER_PID" > "$WORK/llm-server.pid"
for _ in $(seq 1 100); do
  $PYTHON -c "import urllib.request; urllib.request.urlopen('$BASE_URL/models', timeout=1)" 2>/dev/null && break
  kill -0 "$SERVER_PID" 2>/dev/null || { echo "the stand-in LLM server died; see $WORK/llm-server.log" >&2; exit 1; }
  sleep 0.2
done

say "2/8 synth: $SYNTH_N (query, summary) pairs from the transcripts"
done_already "$WORK/synth" ||
  $SPEECHSUM synth --data "$WORK/corpus/train" --out "$WORK/synth" --n "$SYNTH_N" --per-audio 2 \
    --base-url "$BASE_URL" --llm "$LLM_MODEL" --cache-dir "$CACHE" --concurrency 4 --no-progress

say "3/8 sft: LoRA on the composed student ($(steps "$SFT_STEPS"))"
done_already "$WORK/sft" ||
  $SPEECHSUM sft --data "$WORK/synth" --model "$WORK/models/student" --out "$WORK/sft" \
    --max-steps "$SFT_STEPS" --batch-size 4 --lr "$LR" --logging-steps 4

say "4/8 distill: on-policy reverse KL toward the text teacher reading the transcript ($(steps "$KD_STEPS"))"
done_already "$WORK/kd" ||
  $SPEECHSUM distill --data "$WORK/synth" --model "$WORK/sft" --teacher "$WORK/models/text-lm" --out "$WORK/kd" \
    --max-steps "$KD_STEPS" --batch-size 2 --max-new-tokens "$GEN_TOKENS" --lr "$LR" --logging-steps 2

say "5/8 pairs: 2 candidates per prompt from the KD model, pairwise judge (the stand-in)"
done_already "$WORK/pairs" ||
  $SPEECHSUM pairs --model "$WORK/kd" --data "$WORK/synth" --out "$WORK/pairs" --k 2 \
    --max-new-tokens "$GEN_TOKENS" --judge pairwise --judge-base-url "$BASE_URL" --judge-model "$LLM_MODEL" \
    --judge-cache-dir "$CACHE" --no-progress

say "6/8 dpo: the KD model is the reference ($(steps "$DPO_STEPS"))"
done_already "$WORK/dpo" ||
  $SPEECHSUM dpo --model "$WORK/kd" --data "$WORK/pairs" --out "$WORK/dpo" --max-steps "$DPO_STEPS" \
    --batch-size 2 --lr "$LR" --logging-steps 2

say "7/8 eval: sft vs kd vs dpo on the held-out test set, judge = the stand-in"
done_already "$WORK/eval" ||
  $SPEECHSUM eval --data "$WORK/corpus/test.jsonl" --model "$WORK/sft" --model "$WORK/kd" --model "$WORK/dpo" \
    --name sft --name kd --name dpo --out "$WORK/eval" --max-new-tokens "$GEN_TOKENS" --wer-rows 0 \
    --resamples 200 --judge-base-url "$BASE_URL" --judge-model "$LLM_MODEL" --judge-cache-dir "$CACHE" --no-progress
echo "   (the eval table above is also in $WORK/eval/report.md; an existing eval is not reprinted)" >&2

say "8/8 summarize a held-out recording with the DPO model"
$SPEECHSUM summarize "$WORK/corpus/test/product-pricing.wav" --model "$WORK/dpo" --style bullets \
  --max-new-tokens "$GEN_TOKENS" --no-progress --output "$WORK/summary.txt"
cat "$WORK/summary.txt"

cat >&2 <<MSG

== done in $(( $(date +%s) - T0 )) s. Everything is in $WORK:
   corpus/ models/ synth/ sft/ kd/ pairs/ dpo/ eval/report.md summary.txt
   The models are tiny and random, so the summaries above are nonsense: this run shows the pipeline
   works on your machine, not summary quality. For real models and a real LLM (instead of the
   rule-based examples/extractive_llm_server.py), see recipes/paper.sh and recipes/README.md.
MSG
