#!/usr/bin/env bash
# Hard pairs: does drawing similar-sounding talkers together move the unseen-source score? (session 25)
#
# B does worse where a test mixture pairs two voices that sound alike: by a pretrained speaker encoder's cosine between
# the two talkers, festival's similar half of the pairs scores 4.9 dB against 6.1 for the dissimilar half, steelsky's
# 2.3 against 3.7 (recipes/voice_encoder_check.py). Training draws a corpus's talkers at random, so most of its pairs
# are easy ones. `--similar-pairs 1` draws each mixture's second talker in proportion to exp(cos / 0.1) to its first
# (fastsep.data.DynamicMix, cosines of Resemblyzer's GE2E encoder, `fastsep import-encoder`, one embedding per talker
# cached beside each manifest): the drawn pairs' mean cosine rises from 0.69 to 0.76, about that of steelsky's test
# pairs (0.75; recorded 0.67).
# Arms from session 16's B (recipes/state/backbone_within_average), exactly the default's B recipe (the Kokoro corpus
# at weight 10, pairing within one corpus, speed and overlap augmentation, 2001 steps, checkpoints 1000 and 2000
# averaged) plus similar pairs, in two seeds (similar, similar_seed1), scored against the default's B (`with`, seed 0;
# its tables in recipes/results/ablate_kokoro) and its seed replicate (`with_seed1`, recipes/results/ablate_kokoro_next):
#
#   SKIP_CORPORA=1 bash recipes/ablate_similar.sh
#
# Environment: ARMS (default "similar similar_seed1", side by side, one thread each), ARM_STEPS (2001),
# SIMILARITY_TEMPERATURE (0.1), EVAL_ITEMS (100), WORK, DEVICE, SKIP_CORPORA, SKIP_TRAIN=1 (score the arms already
# trained).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"  # ROOT, WORK, DEVICE, STATE; helpers
ARMS="${ARMS:-similar similar_seed1}"; OUT="$WORK/ablate_similar"
run_encoder_arms similar "$OUT" \
  "--similar-pairs 1 --voice-encoder $WORK/voice_encoder --similarity-temperature ${SIMILARITY_TEMPERATURE:-0.1}"
