#!/usr/bin/env bash
# Reach: does a Conv-TasNet that keeps the default's 2 ms frame for its mask but runs its later repeats on 8 ms
# frames - and so sees ~8 s instead of ~2 s - keep unseen real talkers apart better, for the same CPU time?
# (session 28)
#
# Session 27 (recipes/ablate_window.sh) moved the whole model to an 8 ms hop: it swapped talkers less (context) but
# separated each half second worse (a coarse frame), and gained on recorded only. Here the encoder, the mask and the
# first repeat stay at the default's 2 ms (32-sample window, 16-sample hop; the repeat's 8 dilated blocks see ~1 s);
# a strided convolution takes the bottleneck stream down 4x, two repeats of the same blocks run on it (each ~4 s),
# and a transposed convolution brings their skips back up to the mask (ConvTasNet(coarse_stride=4, n_repeats=3,
# fine_repeats=1): 0.68 M parameters against 0.44 M, 0.80x the default's multiply-adds per second of audio). Both arms train from
# scratch on the same corpora as session 27's (the default's pool without Kokoro: synth, recorded, game, adventure,
# drascula; pairing within one corpus, speed and overlap augmentation, levels U[0, 8] dB, lr 1e-3 fixed), the same
# samples per step (8 s) and the same CPU budget (ARM_CPU_MINUTES of one thread each, side by side):
#   w2ms  - the default's B architecture, 2 s segments at batch 4;
#   reach - the coarse repeats, 4 s segments at batch 2 (--join-short 2; a reach of 8 s learns nothing from 2 s);
#   reach_2s - the coarse repeats on the default's 2 s segments at batch 4: the architecture alone (the first pair
#     lost per half second, and 4 s at batch 2 gives half the mixtures per step: this arm tells which did it).
# Each arm's last two kept checkpoints are averaged; scored on the unseen sets and the casts' valid splits, with the
# swap diagnostic (si_sdri_seg):
#
#   SKIP_CORPORA=1 bash recipes/ablate_reach.sh
#
# Environment: ARMS ("w2ms reach reach_2s"; the arms to train, side by side, one thread each - on two cores, train
# two at a time: ARMS="w2ms reach", then ARMS=reach_2s), ARM_CPU_MINUTES (50), KEEP_EVERY (1000), EVAL_ITEMS (100),
# SEED (0), WORK, DEVICE, SKIP_CORPORA, SKIP_TRAIN=1 (score the arms already trained). Every trained arm is scored
# against w2ms (whose tables are reused when present). Results: recipes/results/ablate_reach/.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"  # ROOT, WORK, DEVICE, STATE; helpers
OUT="$WORK/ablate_reach${SEED:+_s$SEED}"
REACH_ARGS='{"n_filters":128,"kernel_size":32,"stride":16,"bn_chan":64,"hid_chan":128,"skip_chan":64,"n_blocks":8,"n_repeats":3,"coarse_stride":4,"fine_repeats":1}'

build_corpora
mkdir -p "$OUT"
ARMS=${ARMS:-w2ms reach reach_2s}
if [[ "${SKIP_TRAIN:-0}" != 1 ]]; then
  echo "== the arms ($ARMS) from scratch, side by side, ${ARM_CPU_MINUTES:-50} CPU minutes each"
  for arm in $ARMS; do
    case $arm in
      w2ms) scratch_arm "$OUT" w2ms "$DEFAULT_B_ARGS" 2 4 --seed "${SEED:-0}" & ;;
      reach) scratch_arm "$OUT" reach "$REACH_ARGS" 4 2 --join-short 2 --seed "${SEED:-0}" & ;;
      reach_2s) scratch_arm "$OUT" reach_2s "$REACH_ARGS" 2 4 --seed "${SEED:-0}" & ;;
      *) echo "unknown arm $arm" >&2; exit 2 ;;
    esac
  done
  wait
fi
SETS="${SCORE_SETS:-recorded:test festival:test steelsky:train adventure:valid game:valid}"
others=(); for arm in reach reach_2s; do [[ -d "$OUT/${arm}_avg" ]] && others+=("$arm:$OUT/${arm}_avg"); done
echo "== backbone SI-SDRi (and the swap diagnostic) on the unseen sets and the valid splits, paired (arm - w2ms)"
SCORE_METRICS=si_sdr,swaps SCORE_SETS="$SETS" SCORE_REUSE_A=1 score_pair "$OUT" w2ms:"$OUT/w2ms_avg" "${others[@]}"
for pair in $SETS; do
  for arm in "${others[@]}"; do fs compare "$OUT/w2ms_${pair%%:*}.csv" "$OUT/${arm%%:*}_${pair%%:*}.csv" --metric si_sdri_seg; done
done
