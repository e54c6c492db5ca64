#!/usr/bin/env bash
# Channel colouring: does B separate unseen recording chains better when every training voice comes through a random
# one? (session 21)
#
# The unseen sources differ from the training corpora in their recording chain as much as in their voices: three
# telephone-prompt studios (two GSM-coded), another game's studio, an unseen synthesiser. Each training corpus has one
# or a few chains, so B may learn a talker partly by its corpus's spectral colour. The `eq` augmentation
# (fastsep.data.augment.random_channel_response: tilt, one to three broad peaks or dips, optional band edges; each
# source its own chain, with probability 0.5) varies it. Arms from session 16's B
# (recipes/state/backbone_within_average), exactly the default's B recipe (recipes/ablate_kokoro.sh's `with`: the
# Kokoro corpus at weight 10, pairing within one corpus, speed + overlap, 2001 steps, checkpoints 1000 and 2000
# averaged) plus the colouring, in two seeds (eq, eq_seed1), each scored against the default's B (`with`, seed 0;
# the seed replicate `with_seed1` of recipes/ablate_kokoro_next.sh is the spread to read them against):
#
#   SKIP_CORPORA=1 bash recipes/ablate_eq.sh
#
# Environment: ARMS (default "eq eq_seed1"; side by side, one thread each), ARM_STEPS (2001), EVAL_ITEMS (100), WORK,
# DEVICE, SKIP_CORPORA, SKIP_TRAIN=1 (score the arms already trained). Results: recipes/results/ablate_eq/.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"  # ROOT, WORK, DEVICE, STATE; helpers
ARMS="${ARMS:-eq eq_seed1}"; OUT="$WORK/ablate_eq"
run_seed_arms eq "$OUT" speed,overlap,eq
