#!/usr/bin/env bash
# Re-create the bundled default model in src/ser/pretrained/default/.
#
# Trains the log-mel CNN under kfold-speaker (5 folds: the measured UAR/accuracy and
# confusion matrix that model.json and MODEL_CARD.md report), then refits it on every
# speaker of RAVDESS + TESS + SAVEE (six emotions) and copies that bundle into the package.
#
#   scripts/make_pretrained.sh [DATA_ROOT]     # DATA_ROOT defaults to ../shared/data
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-../shared/data}
RUN=runs/cnn-mix-kfold
nice .venv/bin/ser train "$DATA/ravdess" "$DATA/tess" "$DATA/savee" \
    --model cnn --protocol kfold-speaker --folds 5 --seed 0 --out "$RUN"
DEST=src/ser/pretrained/default
mkdir -p "$DEST"
cp "$RUN/bundle/model.json" "$RUN/bundle/model.onnx" "$RUN/bundle/weights.safetensors" "$DEST/"
.venv/bin/python scripts/model_card.py "$RUN" "$DEST/MODEL_CARD.md"
echo "bundle written to $DEST"
