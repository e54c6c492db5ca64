#!/usr/bin/env bash
# Does the formant shift (fastsep.data.augment.formant_shift: vocal-tract length varied apart from pitch) move the
# unseen-source score? The controlled pair of arms of recipes/ablate_corpus.sh from the default's B, no new corpus:
# `control` speed + overlap, `with` speed + overlap + formant (half of the sources' crops shifted by U[0.85, 1.18]).
#
#   bash recipes/ablate_formant.sh          # 6001 steps per arm, checkpoints 3000-6000 averaged
set -euo pipefail
NAME=formant WITH_AUGMENT=speed,overlap,formant bash "$(dirname "${BASH_SOURCE[0]}")/ablate_corpus.sh" none
