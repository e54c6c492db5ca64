#!/usr/bin/env bash
# A speaker loss: does what a speaker encoder trained on thousands of real talkers hears move the unseen-source
# score? (session 25)
#
# Resemblyzer's GE2E encoder (`fastsep import-encoder`, trained on LibriSpeech and VoxCeleb) tells the clean unseen
# real talkers apart (recorded: AUC 0.91 on 0.5 s pieces, 1.00 on 2 s) and hears the right talker in only 69 % of the
# default's B outputs for them (`fastsep eval --metrics speaker`; recipes/voice_encoder_check.py). The arms add W x the
# cosine distance between the encoder's embeddings of each PIT-matched output and of its reference, every piece at
# -30 dBFS, to B's SI-SDR loss (`fastsep train separator --speaker-loss W --voice-encoder DIR`; a step costs ~1.9x).
# Arms from session 16's B, exactly the default's B recipe (as recipes/ablate_similar.sh) plus the speaker loss, in
# two seeds, scored against the default's B (`with`) and its seed replicate (`with_seed1`):
#
#   SKIP_CORPORA=1 bash recipes/ablate_speaker_loss.sh
#
# Environment: ARMS (default "speaker speaker_seed1"), SPEAKER_WEIGHT (4), ARM_STEPS (2001), EVAL_ITEMS (100), WORK,
# DEVICE, SKIP_CORPORA, SKIP_TRAIN=1.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"  # ROOT, WORK, DEVICE, STATE; helpers
ARMS="${ARMS:-speaker speaker_seed1}"; OUT="$WORK/ablate_speaker_loss"
run_encoder_arms speaker "$OUT" "--speaker-loss ${SPEAKER_WEIGHT:-4} --voice-encoder $WORK/voice_encoder"
