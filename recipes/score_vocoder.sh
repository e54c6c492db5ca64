#!/usr/bin/env bash
# GM's re-synthesis of clean unseen voices (log-spectral distance and SI-SDR against the source, `fastsep eval
# --vocoder-quality`), a candidate vocoder against the default's, on the same sources of each unseen set: the
# candidate goes into a copy of the default bundle in place of its GM (`fastsep bundle separate-and-diffuse`).
#
#   bash recipes/score_vocoder.sh runs/default/vocoder_real/last
#
# SETS (set:split pairs), EVAL_ITEMS (mixtures, two sources each; default 30). Two sets at a time, one thread each.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
GM=${1:?usage: score_vocoder.sh VOCODER_FOLDER}
SETS="${SETS:-recorded:test steelsky:train festival:test}"; EVAL_ITEMS="${EVAL_ITEMS:-30}"
DEFAULT="$ROOT/fastsep/assets/default"; CANDIDATE="$WORK/bundle_candidate_gm"; OUT="$WORK/vocoder_scores"
rm -rf "$CANDIDATE" && mkdir -p "$OUT"
fs bundle separate-and-diffuse --backbone "$DEFAULT" --vocoder "$GM" --combiner "$DEFAULT" -o "$CANDIDATE"

n=0
for set in $SETS; do
  s=${set%%:*}; split=${set##*:}
  FASTSEP_NUM_THREADS=1 fs eval --data "$WORK/$s" --split "$split" --model "$DEFAULT" "$CANDIDATE" --modes backbone \
     --vocoder-quality --segment 4 --max-items "$EVAL_ITEMS" --metrics si_sdr --json "$OUT/$s.json" --no-progress \
     > "$OUT/$s.log" 2>&1 &
  (( ++n % 2 )) || wait
done
wait
for set in $SETS; do echo "== ${set%%:*}"; grep "vocoder re-synthesis" "$OUT/${set%%:*}.log"; done
