#!/usr/bin/env bash
# Speech codecs: does B separate coded voices (telephone prompts, voicemail, VoIP) better when training voices come
# through random narrow-band coders? (session 22)
#
# Two of the three `recorded` test talkers are GSM-coded telephone prompts; no training voice is coded. The `codec`
# augmentation (fastsep.data.augment.speech_codec: GSM full rate, AMR-NB at a random bit rate, mu-law or A-law, with
# sox; each source its own coder, with probability 0.3; the target is the coded source) adds codec artefacts. Arms
# from session 16's B, exactly the default's B recipe (the Kokoro corpus at weight 10, pairing within one corpus,
# speed + overlap, 2001 steps, checkpoints 1000 and 2000 averaged) plus the codec, in two seeds (codec,
# codec_seed1), each scored against the default's B (`with`, seed 0; its seed replicate `with_seed1` of
# recipes/ablate_kokoro_next.sh is the spread to read them against):
#
#   SKIP_CORPORA=1 bash recipes/ablate_codec.sh
#
# Environment: ARMS (default "codec codec_seed1"; side by side, one thread each), ARM_STEPS (2001), EVAL_ITEMS (100),
# WORK, DEVICE, SKIP_CORPORA, SKIP_TRAIN=1 (score the arms already trained). Results: recipes/results/ablate_codec/.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"  # ROOT, WORK, DEVICE, STATE; helpers
ARMS="${ARMS:-codec codec_seed1}"; OUT="$WORK/ablate_codec"
run_seed_arms codec "$OUT" speed,overlap,codec
