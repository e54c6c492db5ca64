#!/usr/bin/env bash
# Does a third game's casts (Drascula's English and Spanish dubbing, 16 real talkers) move the unseen-source score?
# Session 13's controlled pair of arms (recipes/ablate_corpus.sh): from the default's B of the time
# (recipes/state/backbone_average), 10001 steps each at lr 2.5e-4, fresh Adam, speed and overlap augmentation, the
# default's data and levels, side by side with one thread each; `control` the default's data, `with` the same pooled
# with fastsep corpus voices drascula; checkpoints 5000-10000 averaged; backbone SI-SDRi on 100 fixed mixtures of
# every unseen test set and of the training talkers' valid splits, paired (README, 2026-11-23: ~120 min on the
# 2-core Xeon beside other work). The Drascula arm's average is kept in recipes/state/backbone_drascula_average
# (the default's B since session 14).
#
#   bash recipes/ablate_drascula.sh          # ARM_STEPS=10001
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"  # WORK, STATE, swap_state
FROM=backbone_average BASE="synth recorded game adventure" ARM_STEPS="${ARM_STEPS:-10001}" \
  AVERAGE="05 06 07 08 09 10" bash "$ROOT/recipes/ablate_corpus.sh" drascula
rm -rf "$STATE/backbone_drascula_average.tmp" \
  && cp -r "$WORK/ablate_drascula/with_avg" "$STATE/backbone_drascula_average.tmp"
swap_state backbone_drascula_average
