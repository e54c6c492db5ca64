#!/usr/bin/env bash
# Does a third game's casts (Drascula's English and Spanish dubbing, 16 real talkers) move the unseen-source score?
# Two arms from the default's B (recipes/state/backbone_average), 10001 steps each at lr 2.5e-4, fresh Adam, speed and
# overlap augmentation, the default's data and levels, side by side with one thread each:
#   control   the default's data
#   drascula  the same pooled with fastsep corpus voices drascula
# then each arm's checkpoints 5000-10000 averaged and backbone SI-SDRi on 100 fixed mixtures of every unseen test set
# and of the training talkers' valid splits, paired (README, 2026-11-23: ~120 min on the 2-core Xeon beside other
# work). The drascula arm's average is kept in recipes/state/backbone_drascula_average.
#
#   bash recipes/ablate_drascula.sh          # ARM_STEPS=10001
#
# Environment overrides: WORK, DEVICE, ARM_STEPS, EVAL_ITEMS.
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/common.sh"  # ROOT, WORK, DEVICE, STATE, PYTHONPATH; helpers
ARM_STEPS="${ARM_STEPS:-10001}"; EVAL_ITEMS="${EVAL_ITEMS:-100}"
build_corpora

arm() {  # arm NAME DATA...
  local name=$1; shift
  FASTSEP_NUM_THREADS=1 fs train separator --model convtasnet --model-args "$DEFAULT_B_ARGS" \
     --init-from "$STATE/backbone_average" --data "$@" --out "$WORK/arm_$name" --segment 2 --batch-size 4 \
     --train-items 2000 --valid-items 32 --augment speed,overlap --level-range 0 8 --lr 2.5e-4 --patience 0 \
     --early-stop 0 --checkpoint-every 200 --keep-every 1000 --num-workers 1 --max-steps "$ARM_STEPS" \
     --device "$DEVICE" --no-progress
}
base=("$WORK/synth" "$WORK/recorded" "$WORK/game" "$WORK/adventure")
echo "== 2 the two arms, side by side (one thread each)"
arm control "${base[@]}" & arm drascula "${base[@]}" "$WORK/drascula" & wait

echo "== 3 each arm's checkpoints 5000-10000 averaged"
for a in control drascula; do
  ck=(); for k in 05 06 07 08 09 10; do [[ -d "$WORK/arm_$a/steps/00${k}000" ]] && ck+=("$WORK/arm_$a/steps/00${k}000"); done
  fs average --out "$WORK/arm_${a}_avg" "${ck[@]}"
done

echo "== 4 backbone SI-SDRi on the unseen sets and the valid splits, paired (drascula - control)"
for set in recorded:test festival:test steelsky:train adventure:valid game:valid; do
  s=${set%%:*}; split=${set##*:}
  for a in control drascula; do
    FASTSEP_NUM_THREADS=1 fs eval --data "$WORK/$s" --split "$split" --model "$WORK/arm_${a}_avg" --modes backbone \
       --segment 4 --max-items "$EVAL_ITEMS" --metrics si_sdr --csv "$WORK/drascula_ablation_${a}_$s.csv" --no-progress &
  done
  wait
  fs compare "$WORK/drascula_ablation_control_$s.csv" "$WORK/drascula_ablation_drascula_$s.csv"
done
rm -rf "$STATE/backbone_drascula_average.tmp" && cp -r "$WORK/arm_drascula_avg" "$STATE/backbone_drascula_average.tmp"
swap_state backbone_drascula_average
