#!/usr/bin/env bash
# Does pairing talkers within one corpus move the unseen-source score? Pooled corpora are mixed across each other by
# default, so most training mixtures pair two recording channels (a synthesiser with a studio, one studio with
# another), which B can separate by the channel; every test mixture pairs two talkers of one recording. The
# controlled pair of arms of recipes/ablate_corpus.sh from the default's B, no new corpus: `control` draws talkers
# from the whole pool, `with` draws both talkers of every mixture from one corpus (--mix-within-corpus 1; the corpus
# in proportion to its speech, so each talker is drawn about as often as in the control).
#
#   bash recipes/ablate_pairing.sh          # 4001 steps per arm, checkpoints 2000-4000 averaged (session 16, ~80 min)
#   WITHIN=0.5 NAME=within50 bash recipes/ablate_pairing.sh   # another dose
set -euo pipefail
FROM=backbone_drascula_average ARM_STEPS="${ARM_STEPS:-4001}" AVERAGE="${AVERAGE:-02 03 04}" NAME="${NAME:-within}" \
  WITH_ARGS="--mix-within-corpus ${WITHIN:-1}" bash "$(dirname "${BASH_SOURCE[0]}")/ablate_corpus.sh" none
