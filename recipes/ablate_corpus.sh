#!/usr/bin/env bash
# Does one more voice corpus (or one more augmentation) move the unseen-source score? A controlled pair of arms from
# the same B, the same steps, settings and seed, side by side with one thread each:
#   control   the base data, speed and overlap augmentation
#   with      the base data pooled with CORPUS (one of `fastsep corpus voices`' sources, built by build_corpora; or
#             `none`), augmented with WITH_AUGMENT (default: the control's speed,overlap), with the training
#             options WITH_ARGS (e.g. "--mix-within-corpus 1") added
# (CONTROL_ARGS, e.g. "--mix-within-corpus 1", go to the control's training only, so that the arms differ by one
# option) then each arm's kept checkpoints averaged (as the default's B is) and backbone SI-SDRi on 100 fixed mixtures of
# every unseen test set and of the training talkers' valid splits, paired (with - control).
#
#   bash recipes/ablate_corpus.sh klettres                      # from the default's B, 6001 steps
#   FROM=backbone_average BASE="synth recorded game adventure" ARM_STEPS=10001 AVERAGE="05 06 07 08 09 10" \
#     bash recipes/ablate_corpus.sh drascula                     # session 13's Drascula arms (ablate_drascula.sh)
#   NAME=formant WITH_AUGMENT=speed,overlap,formant bash recipes/ablate_corpus.sh none   # (recipes/ablate_formant.sh)
#   NAME=within WITH_ARGS="--mix-within-corpus 1" bash recipes/ablate_corpus.sh none     # (recipes/ablate_pairing.sh)
#
# Environment: FROM (a B in recipes/state; default backbone_drascula_average, the default's B of sessions 14-15),
# BASE (corpora of the control), ARM_STEPS, AVERAGE (the kept checkpoints averaged, in thousands of steps),
# EVAL_ITEMS, WITH_AUGMENT, WITH_ARGS, CONTROL_ARGS, NAME (default CORPUS), WORK, DEVICE, SKIP_CORPORA. Writes
# $WORK/ablate_<NAME>/{control,with}/ (runs), .../{control,with}_avg/ and per-mixture CSVs.
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/common.sh"  # ROOT, WORK, DEVICE, STATE, PYTHONPATH; helpers
NEW="${1:?usage: bash recipes/ablate_corpus.sh CORPUS (a fastsep corpus voices source, or none)}"
FROM="${FROM:-backbone_drascula_average}"; BASE="${BASE:-synth recorded game adventure drascula}"
ARM_STEPS="${ARM_STEPS:-6001}"; AVERAGE="${AVERAGE:-03 04 05 06}"; EVAL_ITEMS="${EVAL_ITEMS:-100}"
WITH_AUGMENT="${WITH_AUGMENT:-speed,overlap}"; OUT="$WORK/ablate_${NAME:-$NEW}"
[[ -d "$STATE/$FROM" ]] || { echo "no B at $STATE/$FROM" >&2; exit 1; }
build_corpora

base=(); for c in $BASE; do base+=("$WORK/$c"); done
with=("${base[@]}"); [[ "$NEW" == none ]] || with+=("$WORK/$NEW")
arm() {  # arm NAME AUGMENT EXTRA_OPTIONS DATA...
  local name=$1 augment=$2 extra=$3; shift 3
  FASTSEP_NUM_THREADS=1 FINETUNE_ARGS="$extra" finetune_b "$STATE/$FROM" "$OUT/$name" "$ARM_STEPS" "$augment" "$@"
}
echo "== 2 the two arms from $FROM, side by side (one thread each), $ARM_STEPS steps"
arm control speed,overlap "${CONTROL_ARGS:-}" "${base[@]}" & arm with "$WITH_AUGMENT" "${WITH_ARGS:-}" "${with[@]}" & wait

echo "== 3 each arm's checkpoints ${AVERAGE// /, } (thousands of steps) averaged"
for a in control with; do
  ck=(); for k in $AVERAGE; do [[ -d "$OUT/$a/steps/00${k}000" ]] && ck+=("$OUT/$a/steps/00${k}000"); done
  fs average --out "$OUT/${a}_avg" "${ck[@]}"
done

echo "== 4 backbone SI-SDRi on the unseen sets and the valid splits, paired (with - control)"
score_pair "$OUT" control:"$OUT/control_avg" with:"$OUT/with_avg"
