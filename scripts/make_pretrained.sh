#!/usr/bin/env bash
# Re-create a model shipped with ser in src/ser/pretrained/$NAME/ (default: default).
#
# Trains the default model (ANOVA top-500 + logistic regression on `functionals`) under
# kfold-speaker (5 folds: the measured UAR/accuracy and confusion matrix that model.json
# and MODEL_CARD.md report), then refits it on every speaker of RAVDESS + TESS + SAVEE (six
# emotions) and copies that bundle into the package. MODEL=cnn ships the log-mel CNN instead
# (faster, less accurate; see docs/RESULTS.md).
#
#   scripts/make_pretrained.sh [DATA_ROOT]     # DATA_ROOT defaults to ../shared/data
#   MODEL=whisper NAME=whisper scripts/make_pretrained.sh    # `ser predict --model whisper`
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-../shared/data}
MODEL=${MODEL:-logreg}
NAME=${NAME:-default}
RUN=runs/$MODEL-mix-kfold
nice .venv/bin/ser train "$DATA/ravdess" "$DATA/tess" "$DATA/savee" \
    --model "$MODEL" --protocol kfold-speaker --folds 5 --seed 0 --out "$RUN"
DEST=src/ser/pretrained/$NAME
mkdir -p "$DEST"
rm -f "$DEST/model.json" "$DEST/model.onnx" "$DEST/weights.safetensors"
cp "$RUN"/bundle/* "$DEST/"
.venv/bin/python scripts/model_card.py "$RUN" "$DEST/MODEL_CARD.md"
echo "bundle written to $DEST"
