#!/usr/bin/env bash
# Context: does B keep its talkers apart longer when it trains on longer segments? (session 21)
#
# `fastsep eval --metrics si_sdr,swaps` on the default's B found it handing a talker from one output to the other
# partway through many mixtures of the hardest unseen set: matched afresh every 0.5 s, its estimates score 1.1 dB
# higher on recorded's same-gender real voices (festival +0.25, synth +0.15); its own 2 s halves score 0.6-0.9 dB
# higher than the 4 s mixture they come from. B trains on 2 s segments, so its loss never sees a swap further apart
# than that. The arm `seg4` is the default's B recipe (recipes/ablate_kokoro.sh's `with`, from session 16's B:
# Kokoro at weight 10, pairing within one corpus, speed + overlap, 2001 steps, checkpoints 1000 and 2000 averaged)
# on 4 s segments at batch 2 (the same samples per step, so the same cost), utterances of 2-4 s completed with more
# of their talker's speech (`--join-short 2`: the same utterances the 2 s arms draw on). Two seeds (seg4,
# seg4_seed1); scored with the swap diagnostic against the default's B (`with`, rescored here with it):
#
#   SKIP_CORPORA=1 bash recipes/ablate_context.sh
#
# Environment: ARMS (default "seg4 seg4_seed1"; side by side, one thread each), ARM_STEPS (2001), EVAL_ITEMS (100),
# SCORE_SETS, WORK, DEVICE, SKIP_CORPORA, SKIP_TRAIN=1 (score the arms already trained). Results:
# recipes/results/ablate_context/.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"  # ROOT, WORK, DEVICE, STATE; helpers
ARMS="${ARMS:-seg4 seg4_seed1}"; OUT="$WORK/ablate_context"
# `with` rescored here (SCORE_A_FROM empty), with the swap column
SCORE_METRICS=si_sdr,swaps SCORE_A_FROM= run_seed_arms seg4 "$OUT" speed,overlap \
  "--segment 4 --batch-size 2 --join-short 2"
for pair in ${SCORE_SETS:-recorded:test festival:test steelsky:train kokoro:test adventure:valid game:valid}; do
  s=${pair%%:*}
  for a in $ARMS; do fs compare "$OUT/with_$s.csv" "$OUT/${a}_$s.csv" --metric si_sdri_seg; done
done
