#!/usr/bin/env bash
# The learning curve on unseen voices: every kept checkpoint of a B run (RUN/steps/<step>, one per 1000 steps) and
# any reference models (the shipped bundle, an average) scored in backbone mode on the same fixed mixtures of each
# test set, one `fastsep eval` table per set (RUN/checkpoints_<set>_<FROM>-<TO>.json and .csv), then every such
# table of the run drawn against the step (RUN/checkpoints.png): score a run's checkpoints as they come.
#
#   bash recipes/score_checkpoints.sh runs/default/backbone_within fastsep/assets/default runs/default/x_average
#
#   FROM=7000 bash recipes/score_checkpoints.sh runs/default/backbone_within runs/default/x_average   # later ones
#
# SETS (set:split pairs; default the three unseen sources and two training casts' held-out lines), FROM and TO (the
# steps scored, default all), EVAL_ITEMS (100). Two sets are scored at a time, one thread each.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
RUN=${1:?usage: score_checkpoints.sh RUN [REFERENCE_MODEL ...]}; shift
SETS="${SETS:-recorded:test festival:test steelsky:train adventure:valid game:valid}"
FROM="${FROM:-0}"; TO="${TO:-99999999}"; EVAL_ITEMS="${EVAL_ITEMS:-100}"
models=("$@")
for ck in "$RUN"/steps/*; do [[ -f "$ck/model.json" ]] && (( 10#$(basename "$ck") >= FROM && 10#$(basename "$ck") <= TO )) && models+=("$ck"); done
(( ${#models[@]} )) || { echo "no checkpoints in $RUN/steps and no reference models" >&2; exit 1; }
echo "== ${#models[@]} model(s) on: $SETS"

tag="$FROM-$TO"; [[ "$TO" == 99999999 ]] && tag="$FROM-"; n=0
for set in $SETS; do
  s=${set%%:*}; split=${set##*:}; out="$RUN/checkpoints_${s}_$tag"
  FASTSEP_NUM_THREADS=1 fs eval --data "$WORK/$s" --split "$split" --model "${models[@]}" --modes backbone \
     --segment 4 --max-items "$EVAL_ITEMS" --metrics si_sdr --json "$out.json" --csv "$out.csv" --no-progress \
     > "$out.log" 2>&1 &
  (( ++n % 2 )) || wait
done
wait
jsons=()
for set in $SETS; do
  s=${set%%:*}; grep -A$((${#models[@]} + 2)) "^Method" "$RUN/checkpoints_${s}_$tag.log"
  jsons+=("$RUN"/checkpoints_"$s"_*.json)
done
fs plot checkpoints "${jsons[@]}" -o "$RUN/checkpoints.png" --title "$(basename "$RUN"): backbone SI-SDRi per checkpoint"
