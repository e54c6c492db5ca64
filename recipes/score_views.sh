#!/usr/bin/env bash
# Several separations of one mixture, averaged: what it does for the default's B on unseen voices (session 20).
#
#   bash recipes/score_views.sh
#
# Built with `fastsep ensemble` and scored with `fastsep eval --modes backbone` on the same 100 fixed mixtures per
# set as every B comparison (recipes/common.sh's score_pair), paired against the default's B of session 19
# (recipes/state/backbone_kokoro_average, `with`):
#   negated      the negated mixture alone, its estimate negated back (--polarities -1): which polarity B prefers
#   polarity     the mixture and its negation, averaged (--polarities 1,-1)
#   shift8       the mixture and the mixture delayed by 8 samples (half the encoder's hop), averaged (--shifts 0,8)
#   arms4        four B's fine-tuned from one start (the default's B, its seed-1 replicate, and the `more` and
#                `channel` arms of recipes/ablate_kokoro_next.sh), outputs averaged
#   arms4_pol    the same four, each on both polarities (8 passes)
#   soup4        the same four, *weights* averaged (fastsep average; one network)
# Needs the arms' averages in $WORK/ablate_kokoro_next (bash recipes/ablate_kokoro_next.sh, ARMS="more channel"
# and ARMS=with_seed1). Environment: VIEWS (default all of the above), SCORE_SETS, EVAL_ITEMS, WORK.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"  # ROOT, WORK, DEVICE, STATE; helpers
OUT="$WORK/score_views"; REF="$STATE/backbone_kokoro_average"; K="$WORK/ablate_kokoro_next"
VIEWS="${VIEWS:-negated polarity shift8 arms4 arms4_pol soup4}"
arms=("$REF" "$K/with_seed1_avg" "$K/more_avg" "$K/channel_avg")
mkdir -p "$OUT"
models=()
for v in $VIEWS; do
  rm -rf "$OUT/$v"
  case $v in
    negated) fs ensemble "$REF" --polarities -1 --out "$OUT/$v" ;;
    polarity) fs ensemble "$REF" --polarities 1,-1 --out "$OUT/$v" ;;
    shift8) fs ensemble "$REF" --shifts 0,8 --out "$OUT/$v" ;;
    arms4) fs ensemble "${arms[@]}" --out "$OUT/$v" ;;
    arms4_pol) fs ensemble "${arms[@]}" --polarities 1,-1 --out "$OUT/$v" ;;
    soup4) fs average "${arms[@]}" --out "$OUT/$v" ;;
    *) echo "unknown view $v" >&2; exit 1 ;;
  esac
  models+=("$v:$OUT/$v")
done
# the default's B was scored on these mixtures by recipes/ablate_kokoro_next.sh
SCORE_SETS="${SCORE_SETS:-recorded:test festival:test steelsky:train kokoro:test adventure:valid game:valid}" \
  SCORE_A_FROM="$K" SCORE_REUSE_A=1 score_pair "$OUT" with:"$REF" "${models[@]}"
