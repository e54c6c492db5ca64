#!/usr/bin/env bash
# Window: does a Conv-TasNet with a longer encoder window and hop - and so a receptive field four times longer, in
# seconds - keep unseen real talkers apart better, for the same CPU time? (session 27)
#
# The default's B frames the signal at a 2 ms hop (32-sample window, 16-sample hop), so its 16 dilated blocks see
# ~2 s: session 21 found it handing a talker from one output to the other inside 4 s mixtures of real voices (matched
# afresh every 0.5 s its estimates gain +1.1 dB on recorded), and neither 4 s training segments nor an embedding
# could undo that within a ~2 s view. At an 8 ms hop (128-sample window, 256 filters) the same blocks see ~8 s - all
# of a 4 s mixture - and cost about a quarter per second of audio. Both arms train from scratch on the same corpora
# (the default's pool without Kokoro: synth, recorded, game, adventure, drascula; pairing within one corpus, speed
# and overlap augmentation, levels U[0, 8] dB, lr 1e-3 fixed), the same samples per step (8 s) and the same CPU
# budget (ARM_CPU_MINUTES of one thread each, side by side):
#   w2ms - the default's B architecture, 2 s segments at batch 4;
#   w8ms - 128-sample window, 64-sample hop, 256 filters, 4 s segments at batch 2 (--join-short 2).
# Each arm's last two kept checkpoints are averaged; scored on the unseen sets and the casts' valid splits, with the
# swap diagnostic (si_sdri_seg):
#
#   SKIP_CORPORA=1 bash recipes/ablate_window.sh
#
# Environment: ARM_CPU_MINUTES (50), KEEP_EVERY (1000), EVAL_ITEMS (100), WORK, DEVICE, SKIP_CORPORA, SKIP_TRAIN=1
# (score the arms already trained). Results: recipes/results/ablate_window/.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"  # ROOT, WORK, DEVICE, STATE; helpers
OUT="$WORK/ablate_window"
W8MS_ARGS='{"n_filters":256,"kernel_size":128,"stride":64,"bn_chan":64,"hid_chan":128,"skip_chan":64,"n_blocks":8,"n_repeats":2}'

build_corpora
mkdir -p "$OUT"
if [[ "${SKIP_TRAIN:-0}" != 1 ]]; then
  echo "== the arms w2ms and w8ms from scratch, side by side, ${ARM_CPU_MINUTES:-50} CPU minutes each"
  scratch_arm "$OUT" w2ms "$DEFAULT_B_ARGS" 2 4 &
  scratch_arm "$OUT" w8ms "$W8MS_ARGS" 4 2 --join-short 2 &
  wait
fi
echo "== backbone SI-SDRi (and the swap diagnostic) on the unseen sets and the valid splits, paired (w8ms - w2ms)"
SCORE_METRICS=si_sdr,swaps SCORE_SETS="${SCORE_SETS:-recorded:test festival:test steelsky:train adventure:valid game:valid}" \
  score_pair "$OUT" w2ms:"$OUT/w2ms_avg" w8ms:"$OUT/w8ms_avg"
for pair in ${SCORE_SETS:-recorded:test festival:test steelsky:train adventure:valid game:valid}; do
  s=${pair%%:*}
  fs compare "$OUT/w2ms_$s.csv" "$OUT/w8ms_$s.csv" --metric si_sdri_seg
done
