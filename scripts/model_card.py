"""Write MODEL_CARD.md for a bundle from its training run's metrics.json.

    python scripts/model_card.py runs/cnn-mix-kfold src/ser/pretrained/default/MODEL_CARD.md
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def card(run: Path, run_name: str) -> str:
    rec = json.loads((run / "metrics.json").read_text())
    meta = json.loads((run / "bundle" / "model.json").read_text())
    m, folds, data = rec["metrics"], rec.get("folds"), rec["data_summary"]
    labels = m["labels"]
    cm = ["| true \\ predicted | " + " | ".join(labels) + " |", "|---" * (len(labels) + 1) + "|"]
    cm += [f"| **{lab}** | " + " | ".join(map(str, row)) + " |"
           for lab, row in zip(labels, m["confusion_matrix"], strict=True)]
    corpora = "\n".join(f"| {name} | {row['utterances']} | {row['speakers']} | "
                        f"{m['per_corpus'][name]['uar']:.1%} | "
                        f"{m['per_corpus'][name]['accuracy']:.1%} |"
                        for name, row in data["corpora"].items())
    final = run / "final" / "result.json"
    history = json.loads(final.read_text())["history"] if final.exists() else []
    refit = (f"for the median best epoch of the folds ({len(history)} epochs)" if history
             else "(a classical model: no epochs, no early stopping)")
    headline = (f"UAR **{folds['uar_mean']:.1%} ± {folds['uar_std']:.1%}**, accuracy "
                f"**{folds['accuracy_mean']:.1%} ± {folds['accuracy_std']:.1%}** (mean ± std "
                f"over {folds['folds']} speaker-independent folds)" if folds else
                f"UAR **{m['uar']:.1%}**, accuracy **{m['accuracy']:.1%}**")
    encoder = ""
    if meta["feature_set"]["name"] == "whisper":
        encoder = ("\n**Encoder.** The features are the pooled states of OpenAI's Whisper base "
                   "encoder (MIT licence), computed by onnxruntime from the int8 graph that "
                   "ships with ser (`ser/pretrained/whisper_base_encoder.onnx`, see "
                   "`WHISPER_LICENSE.md` there; built by `scripts/build_whisper_onnx.py`); "
                   "only the classifier is in this folder.\n")
    confidence = ""
    conf = m.get("confidence")
    if meta.get("calibration") and conf:
        unsure = conf.get("uncertain") or {}
        temperature = meta["calibration"]["temperature"]
        # measured with `ser train --protocol cross-corpus` for each recipe (docs/RESULTS.md,
        # "Cross-corpus with the SVM" and "More than one temperature?")
        xc_ece = ("0.16-0.18 for the shipped SVM recipe"
                  if "gamma" in meta["model"].get("hyperparameters", {}) else
                  "0.07-0.56" if meta["calibration"].get("distance") else "0.09-0.67")
        distance = (f" × mean(x²)^{meta['calibration']['distance']:.2f} (x: the normalised "
                    "features; answers about inputs unlike the training data are softened)"
                    if meta["calibration"].get("distance") else "")
        ece_folds = (f" (per fold {folds['ece_mean']:.3f} ± {folds['ece_std']:.3f}"
                     + (f"; a perfectly calibrated model would show {folds['ece_floor_mean']:.3f}"
                        " per fold on this many answers" if "ece_floor_mean" in folds else "")
                     + ")" if folds and "ece_mean" in folds else "")
        raw_ece = conf.get("ece_uncalibrated", float("nan"))
        by_speaker = (f", {conf['ece_speaker_weighted']:.3f} with every speaker weighing the same"
                      if "ece_speaker_weighted" in conf else "")
        confidence = f"""
## Confidence and "unsure"

The probabilities are calibrated: temperature {temperature:.3f}{distance}, fitted
on {meta['calibration'].get('fitted_on', {}).get('answers', 'held-out speakers')} (every
speaker weighing the same). Expected calibration error over the folds' test speakers:
**{conf['ece']:.3f}** pooled{ece_folds}{by_speaker}; {raw_ece:.3f} before calibration.
An answer with confidence below **{meta['uncertain']['threshold']:.2f}**
is flagged `uncertain` (the threshold at which held-out training speakers reach
{meta['uncertain']['target_precision']:.0%} precision); on the folds' test speakers
{unsure.get('coverage', float('nan')):.0%} of the answers were above it, and
{unsure.get('accuracy_when_sure') or float('nan'):.0%} of those were right. Input with too
little speech gets no emotion at all (the speech rule, docs/FACES.md). On corpora unlike
the training data the confidences are too high (cross-corpus ECE {xc_ece}, docs/RESULTS.md).
"""
    level = meta["feature_set"]["config"].get("level_dbfs")
    augment = meta.get("training_data", {}).get("augment") or []
    robust = "\n**Level and degradations.** " + (
        f"Every clip is brought to one level ({level:g} dBFS for its loudest 5 % of 25 ms "
        "frames) before its features, in training and prediction: the recording level does not "
        "change the answer. " if level is not None else
        "Features see the level as recorded: a quieter recording can change the answer. ")
    copies = augment.count("degrade")
    if copies:
        config = json.loads((run / "config.json").read_text())
        version = config.get("degrade_version", 1)
        v2 = version >= 2  # new talkers, other microphones
        rooms = " (drawn twice as often as each other family)" if version >= 4 else ""
        babble = (f", babble of the voices under `{Path(config['babble_dir']).name}`"
                  + (" made into new talkers" if v2 else "") if config.get("babble_dir") else "")
        robust += ("Trained on " + ("one degraded copy" if copies == 1 else f"{copies} degraded "
                   "copies") + f" of every training clip as well (`--augment {','.join(augment)}`:"
                   f" noise{babble}, a simulated room{rooms}, a telephone line, a codec or clipping"
                   + ("; then, on half of them, another microphone). " if v2 else "). "))
    if "babble" in augment:
        robust += ("One more copy of every training clip has babble alone: 4 of those voices, "
                   "made into new talkers, at 0-25 dB SNR (`babble`). ")
    if "room" in augment:
        robust += ("One more is in a simulated room alone (`room`: a room of the training bank "
                   "at 0.2-1.2 s RT60). ")
    if "talker" in augment:
        robust += ("One more goes through another vocal tract (`talker`: every formant moved by "
                   "one ratio from 0.88-1.14, pitch, timing and level kept). ")
    robust += ("What noise, babble, rooms, telephone lines and codecs cost: `ser evaluate "
               "--conditions standard`; docs/RESULTS.md, \"Recording level and robustness\", "
               "has the table of the default model.\n")
    pca = meta["model"].get("hyperparameters", {}).get("pca")
    axes = (f", its kernel on the first {pca} principal axes of the normalised features "
            "(fitted with it; the graph projects)" if pca else "")
    return f"""# Model card: ser model `{run_name}` (`{meta['name']}`)

**What it does.** Recognises one of six acted emotions — {', '.join(labels)} — in a clip of
English speech. Architecture: `{meta['model']['architecture']}` — {meta['model'].get(
        'description', '')}{axes}; input: {meta['feature_set']['name']} features
(`{json.dumps(meta['feature_set']['config'])}`), normalised with training statistics
stored in `model.json`; output: a probability for each emotion (`model.onnx`, onnxruntime,
no torch).
{encoder}{robust}
## Data

Trained on every speaker of {', '.join(data['corpora'])} ({data['utterances']} utterances,
{data['speakers']} speakers; six emotions, other labels dropped):

| corpus | utterances | speakers | UAR (k-fold) | accuracy (k-fold) |
|---|---|---|---|---|
{corpora}

## Measured performance (speaker-independent)

Protocol `kfold-speaker`: {folds['folds'] if folds else ''} folds by speaker — no speaker in
both training and test; validation speakers (early stopping of neural models; classical
models train on them) come from the training side;
normalisation statistics from training rows only. The shipped model is then refitted on all
speakers {refit}.

{headline}. Pooled over folds (every utterance tested once): UAR {m['uar']:.1%}, accuracy
{m['accuracy']:.1%}, n = {m['n']}.

Confusion matrix (pooled over folds; rows = true label):

{chr(10).join(cm)}
{confidence}
In the mixture folds a TESS test speaker is the *other* TESS woman from the one in
training, and a SAVEE test speaker one of three men: per-corpus figures are estimates on one
to twenty unseen voices each. Treat the RAVDESS figure (20 actors) as the best estimate for
a new speaker of acted English.

## Known limits

- Acted, studio-quality English speech from few speakers ({data['speakers']}): expect much lower
  accuracy on spontaneous speech and other languages; noise, other voices (babble) and
  reverberant rooms cost accuracy (docs/RESULTS.md gives how much).
- Female speech dominates (TESS: two women); SAVEE adds three men, RAVDESS 10 + 10.
- One label per clip; long recordings are segmented by the Recognizer (VAD) first.
- Not a measure of what a person feels — only of how an actor portrayed an emotion.

## Licence (inherited from the training data)

{meta['licence']}.
RAVDESS: CC BY-NC-SA 4.0 (Livingstone & Russo 2018, doi:10.1371/journal.pone.0196391).
TESS: CC BY-NC-ND 4.0 (Pichora-Fuller & Dupuis 2020, doi:10.5683/SP2/E8H2MF).
SAVEE: free for research use (University of Surrey). **Use this model for non-commercial
research only.**

## Re-create

`scripts/make_pretrained.sh` (`MODEL=logreg NAME=fast` for the fast model; the exact
`ser train` command is in it and in docs/RESULTS.md).
"""


if __name__ == "__main__":
    dest = Path(sys.argv[2])
    dest.write_text(card(Path(sys.argv[1]), dest.parent.name))
