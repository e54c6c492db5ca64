#!/usr/bin/env bash
# Which training augmentation moves the unseen-source score: two arms fine-tuned from the default's B (step 19799)
# for the same steps, lr 2.5e-4 fixed, fresh Adam, the default's data and levels, one change between them:
#   all    the default's augmentation (speed, reverberation, background noise, partial overlap)
#   clean  without reverberation and background noise (speed and partial overlap kept)
# then backbone SI-SDRi of each on 100 fixed mixtures of every unseen test set, and paired differences.
#
#   bash recipes/ablate_augmentation.sh          # ARM_STEPS=4000 (2026-11-23: ~80 min per arm, the two side by side
#                                                # with a third training on 2 cores, one thread each)
#
# The clean arm's training state is kept in recipes/state/backbone_clean (its last/, 5 MB, and log) and restored into
# an empty work folder, so the arm continues where it stopped; the control arm is re-run from the default.
# Environment overrides: WORK, DEVICE, ARM_STEPS, EVAL_ITEMS.
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/common.sh"  # ROOT, WORK, DEVICE, STATE, PYTHONPATH; helpers
ARM_STEPS="${ARM_STEPS:-4000}"; EVAL_ITEMS="${EVAL_ITEMS:-100}"
build_corpora
restore_state backbone   # the arms start from B's kept state (step 19799), not from the installed default
restore_state backbone_clean

arm() {  # arm NAME AUGMENT
  FASTSEP_NUM_THREADS=1 fs train separator --model convtasnet --model-args "$DEFAULT_B_ARGS" \
     --init-from "$WORK/backbone/last" --data "$WORK/synth" "$WORK/recorded" "$WORK/game" "$WORK/adventure" \
     --out "$WORK/backbone_$1" --segment 2 --batch-size 4 --train-items 2000 --valid-items 32 --augment "$2" \
     --level-range 0 8 --lr 2.5e-4 --patience 0 --early-stop 0 --checkpoint-every 200 --keep-every 1000 \
     --num-workers 1 --max-steps "$ARM_STEPS" --device "$DEVICE" --no-progress
}
echo "== 2 the two arms, side by side (one thread each)"
arm all all & arm clean speed,overlap & wait
keep_state backbone_clean

echo "== 3 backbone SI-SDRi on the unseen sets, paired"
score() {  # score NAME SET SPLIT
  FASTSEP_NUM_THREADS=1 fs eval --data "$WORK/$2" --split "$3" --model "$WORK/backbone_$1/last" --modes backbone \
     --segment 4 --max-items "$EVAL_ITEMS" --metrics si_sdr --json "$WORK/ablation_$1_$2.json" \
     --csv "$WORK/ablation_$1_$2.csv" --no-progress
}
for set in recorded:test festival:test steelsky:train; do
  s=${set%%:*}; split=${set##*:}
  score all "$s" "$split" & score clean "$s" "$split" & wait
  fs compare "$WORK/ablation_all_$s.csv" "$WORK/ablation_clean_$s.csv"
done
fs plot curves "$WORK/backbone_all" "$WORK/backbone_clean" -o "$WORK/ablation_curves.png" --labels all,clean
