#!/usr/bin/env bash
# Polarity: does B learn which way up its training voices are? (session 20)
#
# The default's B separated festival's unseen voices 0.85 dB better when handed the *negated* mixture (and its
# estimate negated back) than the mixture itself, and recorded's 0.32 dB worse: it separates one polarity of a
# voice better than the other, and which one is a property of each corpus (microphone, codec, synthesiser). The
# `polarity` augmentation (fastsep.data.augment: each source's crop negated with probability 0.5) shows every
# training voice both ways up. Arms from session 16's B (recipes/state/backbone_within_average), exactly the default's
# B recipe (recipes/ablate_kokoro.sh's `with`: the Kokoro corpus at weight 10, pairing within one corpus, 2001 steps,
# checkpoints 1000 and 2000 averaged) plus the flip, in two seeds (polarity, polarity_seed1), scored against the
# default's B (`with`, seed 0) and its seed replicate (`with_seed1` of recipes/ablate_kokoro_next.sh):
#
#   SKIP_CORPORA=1 bash recipes/ablate_polarity.sh
#
# Environment: ARMS (default "polarity polarity_seed1"; the arms run side by side, one thread each), ARM_STEPS
# (2001), EVAL_ITEMS (100), WORK, DEVICE, SKIP_CORPORA, SKIP_TRAIN=1 (score the arms already trained).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"  # ROOT, WORK, DEVICE, STATE; helpers
ARMS="${ARMS:-polarity polarity_seed1}"; OUT="$WORK/ablate_polarity"
run_seed_arms polarity "$OUT" speed,overlap,polarity

echo "== each arm on the negated mixture, and on both polarities averaged (fastsep ensemble), on the unseen sets"
views=()
for a in $ARMS; do
  for v in "negated -1" "bothpol 1,-1"; do
    set -- $v; rm -rf "$OUT/${a}_$1"
    fs ensemble "$OUT/${a}_avg" --polarities "$2" --out "$OUT/${a}_$1"
    views+=("${a}_$1:$OUT/${a}_$1")
  done
done
SCORE_SETS="recorded:test festival:test steelsky:train" SCORE_REUSE_A=1 \
  score_pair "$OUT" with:"$STATE/backbone_kokoro_average" "${views[@]}"
