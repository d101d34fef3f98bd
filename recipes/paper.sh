#!/usr/bin/env bash
# The paper's recipe (Ling et al., ICASSP 2026) with open models:
#   synth (1 pair per audio, importance filter) -> sft (LoRA r=16 alpha=32, encoder frozen, 2 epochs)
#   -> distill (on-policy reverse KL on the student's samples, teacher reads the transcript)
#   -> pairs (2 candidates from the KD model, pairwise LLM judge) -> dpo (reference = KD model, 1 epoch)
#   -> eval (sft vs kd vs dpo, LLM judge).
#
#   CORPUS=my_corpus/ TEST=my_test.jsonl bash recipes/paper.sh
#   PRINT_ONLY=1 bash recipes/paper.sh          # print the commands, run nothing
#
# Every setting below can be overridden from the environment. Each stage is skipped when its output
# directory exists (stages write it only when complete), so re-running after a failure resumes.
# Several GPUs (nvidia-smi -L) -> the training stages run under `accelerate launch` (DDP).
# Needs GPUs, the hub and an LLM endpoint; it was NOT run in this repository's CI (see recipes/README.md).
set -euo pipefail

# ---------------------------------------------------------------- models and endpoints
STUDENT="${STUDENT:-microsoft/Phi-4-multimodal-instruct@refs/pr/70}"   # the paper's student (transformers format)
# The paper's teacher is GPT-4o in text mode (closed; shares Phi-4-Mini's o200k tokenizer). Token-level KD
# needs white-box log-probs with the same tokenizer, so the open default is the text LM of the student's
# own family. distill checks the vocabularies before loading any weights.
TEACHER="${TEACHER:-microsoft/Phi-4-mini-instruct}"
LLM_BASE_URL="${LLM_BASE_URL:-}"            # empty = OpenAI (needs $OPENAI_API_KEY); or http://HOST:PORT/v1 (vLLM...)
LLM_MODEL="${LLM_MODEL:-gpt-4.1}"           # the paper's generator and judge
API_KEY_ENV="${API_KEY_ENV:-OPENAI_API_KEY}"

# ---------------------------------------------------------------- data
CORPUS="${CORPUS:-data/corpus}"             # audio + transcripts: dataset dir, .jsonl/.parquet, or folder with .txt sidecars
KD_DATA="${KD_DATA:-}"                      # prompts (audio, transcript, query) for distill; empty = the synth output
PAIRS_DATA="${PAIRS_DATA:-}"                # prompts for pairs; empty = the synth output
TEST="${TEST:-data/test.jsonl}"             # id, audio, transcript, query, style, summary
WORK="${WORK:-runs/paper}"

# ---------------------------------------------------------------- sizes and hyper-parameters
SYNTH_N="${SYNTH_N:-}"                      # empty = one pass over CORPUS (paper: 1M pairs)
PER_AUDIO="${PER_AUDIO:-1}"                 # the paper: one pair per audio
MIN_IMPORTANCE="${MIN_IMPORTANCE:-3}"       # importance filter (1-5)
SYNTH_MAX_COST="${SYNTH_MAX_COST:-200}"     # USD
LORA_R="${LORA_R:-16}"
LORA_ALPHA="${LORA_ALPHA:-32}"
SFT_EPOCHS="${SFT_EPOCHS:-2}"
SFT_LR="${SFT_LR:-1e-4}"
BATCH="${BATCH:-4}"
GRAD_ACCUM="${GRAD_ACCUM:-4}"
KD_EPOCHS="${KD_EPOCHS:-1}"
KD_LR="${KD_LR:-1e-5}"
KD_MAX_NEW_TOKENS="${KD_MAX_NEW_TOKENS:-512}"
K="${K:-2}"                                 # candidates per prompt for DPO pairs
DPO_EPOCHS="${DPO_EPOCHS:-1}"
DPO_BETA="${DPO_BETA:-0.1}"
DPO_LR="${DPO_LR:-5e-6}"
JUDGE_MAX_COST="${JUDGE_MAX_COST:-100}"     # USD, each of pairs and eval
PRINT_ONLY="${PRINT_ONLY:-0}"
ACCELERATE_CONFIG="${ACCELERATE_CONFIG:-$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/accelerate/ddp.yaml}"

# ---------------------------------------------------------------- launchers
PYTHON="${PYTHON:-python}"
NGPU="$( (nvidia-smi -L 2>/dev/null || true) | grep -c '^GPU' || true)"
if [ "${NGPU:-0}" -gt 1 ]; then
  TRAIN=(accelerate launch --config_file "$ACCELERATE_CONFIG" --num_processes "$NGPU" -m speechsum_cli)
else
  TRAIN=("$PYTHON" -m speechsum_cli)
fi
RUN=("$PYTHON" -m speechsum_cli)
LLM=(--llm "$LLM_MODEL" --api-key-env "$API_KEY_ENV")
JUDGE=(--judge-model "$LLM_MODEL" --judge-api-key-env "$API_KEY_ENV")   # the same judge flags in pairs and eval
if [ -n "$LLM_BASE_URL" ]; then
  LLM+=(--base-url "$LLM_BASE_URL"); JUDGE+=(--judge-base-url "$LLM_BASE_URL")
fi
SYNTH_SIZE=(); [ -n "$SYNTH_N" ] && SYNTH_SIZE=(--n "$SYNTH_N")
KD_DATA="${KD_DATA:-$WORK/synth}"
PAIRS_DATA="${PAIRS_DATA:-$WORK/synth}"

stage() {  # stage NAME OUTPUT_DIR COMMAND...
  local name="$1" out="$2"; shift 2
  printf '\n== %s -> %s\n' "$name" "$out" >&2
  if [ "$PRINT_ONLY" = 1 ]; then printf '%q ' "$@"; echo; return 0; fi
  if [ -e "$out" ]; then echo "   exists: skipped (delete it to redo)" >&2; return 0; fi
  "$@"
}

echo "GPUs visible: ${NGPU:-0}; training launcher: ${TRAIN[*]}" >&2
[ "$PRINT_ONLY" = 1 ] || mkdir -p "$WORK"

stage synth "$WORK/synth" "${RUN[@]}" synth --data "$CORPUS" --out "$WORK/synth" --per-audio "$PER_AUDIO" \
  "${SYNTH_SIZE[@]}" --min-importance "$MIN_IMPORTANCE" --max-cost "$SYNTH_MAX_COST" "${LLM[@]}" --concurrency 32

stage sft "$WORK/sft" "${TRAIN[@]}" sft --data "$WORK/synth" --model "$STUDENT" --out "$WORK/sft" \
  --lora-r "$LORA_R" --lora-alpha "$LORA_ALPHA" --epochs "$SFT_EPOCHS" --lr "$SFT_LR" \
  --batch-size "$BATCH" --grad-accum "$GRAD_ACCUM" --gradient-checkpointing

stage distill "$WORK/kd" "${TRAIN[@]}" distill --data "$KD_DATA" --model "$WORK/sft" --teacher "$TEACHER" \
  --out "$WORK/kd" --loss reverse-kl --lmbda 1.0 --temperature 1.0 --max-new-tokens "$KD_MAX_NEW_TOKENS" \
  --lora-r "$LORA_R" --lora-alpha "$LORA_ALPHA" --epochs "$KD_EPOCHS" --lr "$KD_LR" \
  --batch-size "$BATCH" --grad-accum "$GRAD_ACCUM" --gradient-checkpointing

stage pairs "$WORK/pairs" "${RUN[@]}" pairs --model "$WORK/kd" --data "$PAIRS_DATA" --out "$WORK/pairs" \
  --k "$K" --judge pairwise "${JUDGE[@]}" --max-cost "$JUDGE_MAX_COST"

stage dpo "$WORK/dpo" "${TRAIN[@]}" dpo --model "$WORK/kd" --data "$WORK/pairs" --out "$WORK/dpo" \
  --beta "$DPO_BETA" --epochs "$DPO_EPOCHS" --lr "$DPO_LR" --lora-r "$LORA_R" --lora-alpha "$LORA_ALPHA" \
  --batch-size "$BATCH" --grad-accum "$GRAD_ACCUM" --gradient-checkpointing

stage eval "$WORK/eval" "${RUN[@]}" eval --data "$TEST" --model "$WORK/sft" --model "$WORK/kd" --model "$WORK/dpo" \
  --name sft --name kd --name dpo --out "$WORK/eval" "${JUDGE[@]}" --max-cost "$JUDGE_MAX_COST" --plot
