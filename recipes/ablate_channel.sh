#!/usr/bin/env bash
# Does pairing talkers within one recording channel, rather than within one corpus, move the unseen-source score?
# Session 16's within-corpus pairing (--mix-within-corpus 1) still pairs channels inside a corpus: the synthetic
# corpus's two engines, the recorded corpus's four studios, the game's and Drascula's two dubbings each. The controlled
# pair of arms of recipes/ablate_corpus.sh from the default's B, no new corpus: `control` pairs within one corpus,
# `with` within one channel (--pair-by channel; fastsep.data.channels). Each recorded talker is a channel of its own,
# so at P = 1 the `with` arm never draws the recorded corpus: WITHIN=0.8 keeps some of it in cross pairs.
#
#   SKIP_CORPORA=1 bash recipes/ablate_channel.sh            # 4001 steps per arm, checkpoints 2000-4000 averaged
#   WITHIN=0.8 NAME=channel80 bash recipes/ablate_channel.sh
set -euo pipefail
p="${WITHIN:-1}"
FROM="${FROM:-backbone_within_average}" ARM_STEPS="${ARM_STEPS:-4001}" AVERAGE="${AVERAGE:-02 03 04}" \
  NAME="${NAME:-channel}" CONTROL_ARGS="--mix-within-corpus $p" WITH_ARGS="--mix-within-corpus $p --pair-by channel" \
  bash "$(dirname "${BASH_SOURCE[0]}")/ablate_corpus.sh" none
