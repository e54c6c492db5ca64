#!/usr/bin/env bash
# What talker swaps cost a backbone on each test set (session 21): fastsep eval's `swaps` diagnostic (SI-SDRi with the
# talkers matched afresh every 0.5 s, beside the whole-mixture SI-SDRi) on the 4 s mixtures and on 2 s mixtures of
# the same sets (other fixed crops), plus the swap map of the hardest set (fastsep plot swaps).
#
#   bash recipes/score_swaps.sh [MODEL]        (default: the bundled model; results in recipes/results/swaps/)
#
# Environment: WORK, EVAL_ITEMS (100), OUT.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"  # ROOT, WORK, DEVICE, STATE; helpers
MODEL="${1:-$ROOT/fastsep/assets/default}"; OUT="${OUT:-$ROOT/recipes/results/swaps}"; mkdir -p "$OUT"
for pair in recorded:test festival:test steelsky:train kokoro:test synth:test; do
  s=${pair%%:*}; split=${pair##*:}
  for seg in 4 2; do
    FASTSEP_NUM_THREADS=1 fs eval --data "$WORK/$s" --split "$split" --model "$MODEL" --modes backbone \
       --segment "$seg" --max-items "${EVAL_ITEMS:-100}" --metrics si_sdr,swaps --csv "$OUT/${s}_${seg}s.csv" \
       --json "$OUT/${s}_${seg}s.json" --no-progress > "$OUT/${s}_${seg}s.txt" 2>/dev/null
    echo "$s, ${seg} s mixtures: $(sed -n 3p "$OUT/${s}_${seg}s.txt")"
  done
done
FASTSEP_NUM_THREADS=1 fs plot swaps --data "$WORK/recorded" --model "$MODEL" --max-items 100 --rows 40 \
   -o "$OUT/swaps_recorded.png" 2>/dev/null
