#!/usr/bin/env bash
# Recipe for the shipped model (models/sleep2vec-small): reproducible from a clean checkout.
#
#   bash scripts/train_shipped_model.sh [WORKDIR]
#
# 1. a synthetic multi-site cohort (fixed seed; generator calibrated against DREAMS and slpdb) as
#    EDF+ files and hypnograms
# 2. a cohort store (subject-level train/val/test splits) with AUGMENT randomised copies of every
#    training night (random sampling rate, filters, gain, polarity, mains, artefacts, beat errors, gaps)
# 3. contrastive pretraining, small preset, tokenizers on engineered per-night-normalised features,
#    EEG/EOG features through one-hot bins and the other modalities' as values (TOKENIZER=features-mixed;
#    features: values everywhere, features-binned: bins everywhere, raw: the paper's raw-sample
#    tokenizer), DASH-InfoNCE
# 4. the same pretraining with plain InfoNCE (the paper's baseline; same store, seed, schedule)
# 5. fine-tuning the staging head with modality dropout on the DASH backbone: the synthetic-only
#    classifier (what the real-data figures call zero-shot)
# 6. the public real recordings of ../shared/data (PhysioNet slpdb beats, DREAMS EEG excerpts and
#    the excerpt-3 PSG) as a store, and the adaptation stage: the classifier fine-tuned on synthetic
#    + real nights (s2v_core/train/adapt.py). Without ../shared/data the synthetic-only
#    classifier is shipped.
# 7. export of both classifiers + model card into models/sleep2vec-small/
# 8. cohort embeddings of both backbones and the classifier, with site-probe scores, into
#    models/sleep2vec-small/embeddings/ (the app's Embedding map page)
# 9. the model card rewritten with the recipe's wall time (recipe_started/recipe_finished stamps)
# Then `python bench/bench_real.py` (leave-one-subject-out figures and peers; needs the bench
# extras) and `python scripts/export_model.py --work W --out models/sleep2vec-small --card-only`
# put its results into the model card.
# CPU only. Environment knobs: NIGHTS, HOURS, AUGMENT, PRE_EPOCHS, FT_EPOCHS, TOKENIZER.
set -euo pipefail
cd "$(dirname "$0")/.."
W="${1:-.cache/recipe}"
S2V="${S2V:-.venv/bin/s2v}"
PY="${PY:-.venv/bin/python}"
NIGHTS="${NIGHTS:-48}"; HOURS="${HOURS:-3}"; AUGMENT="${AUGMENT:-1}"
PRE_EPOCHS="${PRE_EPOCHS:-20}"; FT_EPOCHS="${FT_EPOCHS:-10}"; TOKENIZER="${TOKENIZER:-features-mixed}"
mkdir -p "$W"
# wall-time stamps for the model card (this invocation; steps already done are skipped on a rerun)
date +%s > "$W/recipe_started"; rm -f "$W/recipe_finished"
[ -f "$W/cohort/metadata.csv" ] || "$S2V" synth --nights "$NIGHTS" --hours "$HOURS" --seed 2026 --out "$W/cohort"
[ -f "$W/store/manifest.csv" ] || "$S2V" prepare "$W/cohort" --out "$W/store" --seed 0 --augment "$AUGMENT"
for LOSS in dash infonce; do
    RUN="$W/pretrain"; [ "$LOSS" = dash ] || RUN="$W/pretrain_$LOSS"
    [ -f "$RUN/best/model.safetensors" ] || "$S2V" pretrain --data "$W/store" --preset small --loss "$LOSS" \
        --tokenizer "$TOKENIZER" --epochs "$PRE_EPOCHS" --batch-size 16 --seed 0 --device cpu --out "$RUN" --quiet
done
[ -f "$W/finetune/best/model.safetensors" ] || "$S2V" finetune --data "$W/store" --pretrained "$W/pretrain/best" \
    --epochs "$FT_EPOCHS" --batch-size 16 --lr 1e-3 --modality-dropout 0.5 --train-tokenizers --seed 0 --out "$W/finetune"
if "$PY" -c "import sys; sys.path.insert(0, 'scripts'); from real_data import SHARED; sys.exit(not (SHARED / 'slpdb').is_dir())"; then
    [ -f "$W/real/sources.json" ] || "$PY" scripts/real_data.py prepare --out "$W/real"  # (again for a store without sources.json)
    [ -f "$W/adapt/best/model.safetensors" ] || "$PY" scripts/real_data.py adapt --synthetic "$W/store" \
        --real "$W/real" --pretrained "$W/finetune/best" --out "$W/adapt"
fi
"$PY" scripts/export_model.py --work "$W" --out models/sleep2vec-small
"$PY" scripts/export_cohort_embeddings.py --work "$W" --out models/sleep2vec-small/embeddings
date +%s > "$W/recipe_finished"
"$PY" scripts/export_model.py --work "$W" --out models/sleep2vec-small --card-only > /dev/null
