#!/usr/bin/env bash
# Recipe for the shipped model (models/sleep2vec-small): reproducible from a clean checkout.
#
#   bash scripts/train_shipped_model.sh [WORKDIR]
#
# 1. a synthetic multi-site cohort (fixed seed) as EDF+ files and hypnograms
# 2. a cohort store (subject-level train/val/test splits)
# 3. contrastive pretraining, small preset, DASH-InfoNCE
# 4. fine-tuning the staging head with modality dropout
# 5. export of the classifier + model card into models/sleep2vec-small/
# CPU only, about 15-25 minutes on 2 cores. Environment knobs: NIGHTS, HOURS, PRE_EPOCHS, FT_EPOCHS.
set -euo pipefail
cd "$(dirname "$0")/.."
W="${1:-.cache/recipe}"
S2V="${S2V:-.venv/bin/s2v}"
PY="${PY:-.venv/bin/python}"
NIGHTS="${NIGHTS:-48}"; HOURS="${HOURS:-3}"; PRE_EPOCHS="${PRE_EPOCHS:-60}"; FT_EPOCHS="${FT_EPOCHS:-12}"
mkdir -p "$W"
[ -f "$W/cohort/metadata.csv" ] || "$S2V" synth --nights "$NIGHTS" --hours "$HOURS" --seed 2026 --out "$W/cohort"
[ -f "$W/store/manifest.csv" ] || "$S2V" prepare "$W/cohort" --out "$W/store" --seed 0
[ -f "$W/pretrain/best/model.safetensors" ] || "$S2V" pretrain --data "$W/store" --preset small --loss dash \
    --epochs "$PRE_EPOCHS" --batch-size 16 --seed 0 --device cpu --out "$W/pretrain" --quiet
[ -f "$W/finetune/best/model.safetensors" ] || "$S2V" finetune --data "$W/store" --pretrained "$W/pretrain/best" \
    --epochs "$FT_EPOCHS" --batch-size 16 --lr 1e-3 --modality-dropout 0.5 --seed 0 --out "$W/finetune"
"$PY" scripts/export_model.py --work "$W" --out models/sleep2vec-small
