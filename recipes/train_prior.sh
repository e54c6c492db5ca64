#!/usr/bin/env bash
# Trains the small speech prior (the paper's time-frequency attention U-Net, TFAttentionUNet.small, DDPM T = 200) on
# single talkers only (the adventure game's 27-voice studio cast: no mixture is ever seen), bundles it with the
# paper's guided solver and scores it beside the default's backbone on the unseen test sets. Resumes from
# recipes/state/prior.
#
#   bash recipes/train_prior.sh                    # continue to PRIOR_STEPS steps in all, bundle, evaluate
#   PRIOR_STEPS=10000 EVAL_ITEMS=20 bash recipes/train_prior.sh
#
# What the current state took: 3158 steps (batch 4 x 2 s): 0-893 ~50 min of one core shared with two other jobs
# (~3.5 s per step), 893-3158 in session 14 (~50 min of one thread beside an evaluation, ~1.1-1.9 s per step in
# float32; bfloat16 autocast is slower for this network, BENCHMARKS.md). Separating one 4 s mixture takes 200 guided steps, each a forward and backward pass per source (~10 min per
# mixture on a shared core), so the evaluation is on a few mixtures only (README).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
PRIOR_STEPS="${PRIOR_STEPS:-3158}"; EVAL_ITEMS="${EVAL_ITEMS:-3}"
build_corpora

echo "== 2 speech prior (to $PRIOR_STEPS steps in all)"
restore_state prior
fs train prior --arch tfunet --small --data "$WORK/adventure" --out "$WORK/prior" --sample-rate 8000 --segment 2 \
   --batch-size 4 --valid-items 16 --checkpoint-every 100 --keep-every 1000 --num-workers 1 --early-stop 0 \
   --max-steps "$PRIOR_STEPS" --device "$DEVICE" --no-progress
keep_state prior

echo "== 3 bundle (two talkers of the one prior, the paper's hybrid step) and evaluate beside the default's backbone"
fs bundle priors "$WORK/prior" -o "$WORK/prior_bundle"
score_beside_default "$WORK/prior_bundle" prior
