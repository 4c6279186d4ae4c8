#!/usr/bin/env bash
# Re-create a model shipped with ser in src/ser/pretrained/$NAME/ (default: default).
#
# Trains the default model (an RBF SVM on the pooled states of Whisper base's encoder,
# block 3: the `whisper` model) under kfold-speaker (5 folds: the measured
# UAR/accuracy and confusion matrix that model.json and MODEL_CARD.md report), then refits
# it on every speaker of RAVDESS + TESS + SAVEE (six emotions) and copies that bundle into
# the package. MODEL=logreg NAME=fast ships the small fast model (ANOVA top-500 + logistic
# regression on `functionals`; see docs/RESULTS.md).
#
#   scripts/make_pretrained.sh [DATA_ROOT]     # DATA_ROOT defaults to ../shared/data
#   MODEL=logreg NAME=fast scripts/make_pretrained.sh    # `ser predict --model fast`
#
# Both shipped models also train on degraded copies of each training clip (`--augment
# degrade`: noise, a room, a telephone line, a codec or clipping; recorded noise from the
# training part of $DATA/noise): two copies for the default, one for `fast`, chosen for
# each on validation speakers (docs/RESULTS.md, "Recording level and robustness"). The
# default's copies also mix in babble of the CREMA-D voices under $DATA/crema-d (speakers
# of no training corpus; BABBLE=DIR for another folder, BABBLE=none for none), and it gets
# a third copy of babble alone (`--augment babble`; dropped with BABBLE=none), a fourth of a
# room alone (`room`) and a fifth through another vocal tract (`talker`: formants moved,
# pitch kept).
# AUGMENT=none trains without them. JOBS (default 2): worker processes for the fits.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-../shared/data}
MODEL=${MODEL:-whisper}
NAME=${NAME:-default}
if [ "$MODEL" = whisper ]; then
    BABBLE=${BABBLE:-$DATA/crema-d}
    if [ "$BABBLE" = none ]; then AUGMENT=${AUGMENT:-degrade,degrade,room,talker}
    else AUGMENT=${AUGMENT:-degrade,degrade,babble,room,talker}; fi
else
    BABBLE=${BABBLE:-none}
    AUGMENT=${AUGMENT:-degrade}
fi
JOBS=${JOBS:-2}
AUG_ARGS=()
RUN=runs/$MODEL-mix-kfold
if [ "$AUGMENT" != none ]; then
    AUG_ARGS=(--augment "$AUGMENT")
    if [ -d "$DATA/noise" ]; then AUG_ARGS+=(--noise "$DATA/noise"); fi
    RUN=runs/$MODEL-${AUGMENT//,/+}-mix-kfold
    if [ "$BABBLE" != none ]; then
        AUG_ARGS+=(--babble "$BABBLE")
        RUN=$RUN-babble
    fi
fi
nice .venv/bin/ser train "$DATA/ravdess" "$DATA/tess" "$DATA/savee" \
    --model "$MODEL" --protocol kfold-speaker --folds 5 --seed 0 "${AUG_ARGS[@]}" \
    --jobs "$JOBS" --out "$RUN"
DEST=src/ser/pretrained/$NAME
mkdir -p "$DEST"
rm -f "$DEST/model.json" "$DEST/model.onnx" "$DEST/weights.safetensors"
cp "$RUN"/bundle/* "$DEST/"
.venv/bin/python scripts/model_card.py "$RUN" "$DEST/MODEL_CARD.md"
echo "bundle written to $DEST"
