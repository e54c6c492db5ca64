#!/usr/bin/env bash
# Does B gain from more within-corpus training? The default's B is the average of checkpoints 2000-4000 of the
# within-corpus run (train_default.sh step 2d), whose training loss was still falling at step 4000. This resumes that
# run from its kept state (recipes/state/backbone_within: weights, Adam moments, step, RNG) with the very same
# settings to TOTAL steps, keeps the state again, averages the checkpoints AVERAGE (thousands of steps; kept as
# recipes/state/backbone_within_long_average), and scores
# the average's backbone on the unseen sets and the valid splits, paired against the default's B (the same mixtures).
#
#   SKIP_CORPORA=1 bash recipes/continue_within.sh                 # to step 12001, checkpoints 8000-12000 averaged
#   TOTAL=10008 AVERAGE="06 07 08 09 10" bash recipes/continue_within.sh   # session 17's run (stopped at 10008)
#
# Interrupted, it resumes from the last checkpoint (every 200 steps) when run again.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
TOTAL="${TOTAL:-12001}"; AVERAGE="${AVERAGE:-08 09 10 11 12}"; EVAL_ITEMS="${EVAL_ITEMS:-100}"
RUN=backbone_within; OUT="$WORK/$RUN"; AVG="$WORK/${RUN}_long_average"; DEFAULT="$ROOT/fastsep/assets/default"
build_corpora

echo "== 1 B's within-corpus run resumed to $TOTAL steps (one thread)"
restore_state "$RUN"
FASTSEP_NUM_THREADS="${THREADS:-1}" FINETUNE_ARGS="--mix-within-corpus 1" finetune_b "$STATE/backbone_drascula_average" \
   "$OUT" "$TOTAL" speed,overlap "$WORK/synth" "$WORK/recorded" "$WORK/game" "$WORK/adventure" "$WORK/drascula"
keep_state "$RUN"

echo "== 2 checkpoints ${AVERAGE// /, } (thousands of steps) averaged"
ck=(); for k in $AVERAGE; do [[ -d "$OUT/steps/00${k}000" ]] && ck+=("$OUT/steps/00${k}000"); done
(( ${#ck[@]} )) || { echo "none of the checkpoints $AVERAGE is in $OUT/steps" >&2; exit 1; }
fs average --out "$AVG" "${ck[@]}"
keep_model "$(basename "$AVG")"  # the average in recipes/state (1.8 MB): its checkpoints stay in the work folder

echo "== 3 backbone SI-SDRi on the unseen sets and the valid splits, paired (longer - default)"
score_pair "$OUT" default:"$DEFAULT" longer:"$AVG"
