#!/usr/bin/env bash
# Trains the small DiffSep score network (fastsep.models.NCSNpp.small, 0.45 M parameters) on the default model's
# training corpora, bundles it and scores it beside the default's backbone on the unseen test sets. One command;
# training resumes from recipes/state/diffsep (weights with their average, Adam moments, step, RNG).
#
#   bash recipes/train_diffsep.sh                  # continue to DS_STEPS steps in all, bundle, evaluate
#   DS_STEPS=20000 EVAL_ITEMS=100 bash recipes/train_diffsep.sh
#
# What the current state took: 876 steps (batch 4 x 2 s), ~35 min of one core shared with two other trainings
# (~2.5 s per step). Its bundle scores -19 dB SI-SDRi on the unseen sets (README): far too few steps, a tiny
# fraction of the paper's training.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
DS_STEPS="${DS_STEPS:-876}"; EVAL_ITEMS="${EVAL_ITEMS:-20}"
build_corpora

echo "== 2 DiffSep score network (to $DS_STEPS steps in all)"
restore_state diffsep
fs train diffsep --small --data "$WORK/synth" "$WORK/recorded" "$WORK/game" "$WORK/adventure" --out "$WORK/diffsep" \
   --segment 2 --batch-size 4 --train-items 800 --valid-items 16 --valid-sample-items 4 --sampler-steps 30 \
   --checkpoint-every 100 --keep-every 1000 --num-workers 1 --max-steps "$DS_STEPS" --device "$DEVICE" --no-progress
keep_state diffsep

echo "== 3 bundle and evaluate beside the default's backbone"
fs bundle diffsep "$WORK/diffsep" -o "$WORK/diffsep_bundle"
score_beside_default "$WORK/diffsep_bundle" diffsep
