#!/usr/bin/env bash
# Two follow-ups of recipes/ablate_kokoro.sh, each a single change against its `with` arm (the default's B since
# session 19, kept as recipes/state/backbone_kokoro_average), trained side by side from the same B with the same
# steps, settings and seed (one thread each):
#   more      twice the Kokoro talkers at the same share of the mixtures: a second corpus of 100 new blends
#             ($WORK/kokoro2: fastsep corpus kokoro --seed 1 --prefix kb, 0.3 h) pooled in, each corpus at weight 5
#   channel   the same data as `with`, both talkers of each mixture from one recording channel (--pair-by channel)
#   share     Kokoro's voices in ~3x the share of the mixtures, with twice the talkers: both Kokoro corpora, each at
#             weight 15 (`with`: one corpus at weight 10, ~14 % of the mixtures; here ~35 %); share_seedN under seed N
#   with_seedN  `with` itself again under another seed (--seed N: other mixtures, crops, augmentation draws): how far
#             runs of one recipe land apart, the yardstick for the differences above (ARMS=with_seed1; session 20
#             ran ARMS="with_seed2 with_seed3", seed 3 stopped at step 1066)
# then each arm's checkpoints 1000 and 2000 averaged and backbone SI-SDRi on 100 fixed mixtures of every unseen set
# and of the training casts' valid splits, paired against `with` (arm - with).
#
#   SKIP_CORPORA=1 bash recipes/ablate_kokoro_next.sh
#
# Environment: ARMS (default "more channel"), ARM_STEPS (2001), EVAL_ITEMS (100), WORK, DEVICE, SKIP_CORPORA.
# Writes $WORK/ablate_kokoro_next/{more,channel}[_avg]/ and per-mixture CSVs.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"  # ROOT, WORK, DEVICE, STATE; helpers
ARMS="${ARMS:-more channel}"; ARM_STEPS="${ARM_STEPS:-2001}"; OUT="$WORK/ablate_kokoro_next"
FROM="$STATE/backbone_within_average"; REF="$STATE/backbone_kokoro_average"
build_corpora
build_kokoro
[[ " $ARMS " == *" more "* || " $ARMS " == *" share"* ]] && build_kokoro kokoro2 --talkers 100 --hours 0.3 --seed 1 --prefix kb
base=("$WORK/synth" "$WORK/recorded" "$WORK/game" "$WORK/adventure" "$WORK/drascula")
arm() {  # arm NAME EXTRA_OPTIONS DATA...
  local name=$1 extra=$2; shift 2
  FINETUNE_ARGS="$extra" finetune_arm "$FROM" "$OUT/$name" "$ARM_STEPS" speed,overlap "$@"
}
echo "== the arms ($ARMS) from the default's B of session 16, side by side, $ARM_STEPS steps"
for a in $ARMS; do
  case $a in
    more) arm more "--mix-within-corpus 1 --data-weights 1 1 1 1 1 5 5" "${base[@]}" "$WORK/kokoro" "$WORK/kokoro2" & ;;
    share) arm share "--mix-within-corpus 1 --data-weights 1 1 1 1 1 15 15" "${base[@]}" "$WORK/kokoro" \
              "$WORK/kokoro2" & ;;
    share_seed*) arm "$a" "--mix-within-corpus 1 --data-weights 1 1 1 1 1 15 15 --seed ${a#share_seed}" "${base[@]}" \
                    "$WORK/kokoro" "$WORK/kokoro2" & ;;
    with_seed*) arm "$a" "--mix-within-corpus 1 --data-weights $KOKORO_DATA_WEIGHTS --seed ${a#with_seed}" "${base[@]}" \
                   "$WORK/kokoro" & ;;
    channel) arm channel "--mix-within-corpus 1 --pair-by channel --data-weights $KOKORO_DATA_WEIGHTS" "${base[@]}" \
                "$WORK/kokoro" & ;;
    *) echo "unknown arm $a" >&2; exit 1 ;;
  esac
done
wait

echo "== backbone SI-SDRi on the unseen sets and the valid splits, paired (arm - with)"
arms=(); for a in $ARMS; do arms+=("$a:$OUT/${a}_avg"); done
SCORE_SETS="recorded:test festival:test steelsky:train kokoro:test adventure:valid game:valid" SCORE_REUSE_A=1 \
  score_pair "$OUT" with:"$REF" "${arms[@]}"
