#!/usr/bin/env bash
# Which training augmentation moves the unseen-source score: two arms fine-tuned from the default's previous B (step
# 19799, kept in recipes/state/backbone) for the same steps, lr 2.5e-4 fixed, fresh Adam, the default's data and
# levels, one change between them:
#   all    the default's augmentation (speed, reverberation, background noise, partial overlap)
#   clean  without reverberation and background noise (speed and partial overlap kept)
# then backbone SI-SDRi of each arm's last checkpoint and of the average of its checkpoints 5000-10000 on 100 fixed
# mixtures of every unseen test set, and paired differences.
#
#   bash recipes/ablate_augmentation.sh          # ARM_STEPS=10001
#
# Both arms' training states are kept in recipes/state/backbone_{all,clean} (last/, log; 5-7 MB each) and restored
# into an empty work folder, so each arm continues where it stopped. Both arms reached 10001 on 2026-11-23 (the clean
# arm's checkpoint average is kept in recipes/state/backbone_average: it is the default's B; the results are in the
# README). The 1000-step checkpoints that are averaged are not kept in the repo (1.8 MB each): an arm averages those
# its work folder holds, so on a new machine the all arm's average needs ARM_STEPS beyond 10001 or a rerun.
# Environment overrides: WORK, DEVICE, ARM_STEPS, EVAL_ITEMS.
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/common.sh"  # ROOT, WORK, DEVICE, STATE, PYTHONPATH; helpers
ARM_STEPS="${ARM_STEPS:-10001}"; EVAL_ITEMS="${EVAL_ITEMS:-100}"
build_corpora
restore_state backbone   # the arms start from B's kept state (step 19799), not from the installed default
restore_state backbone_all
restore_state backbone_clean

arm() {  # arm NAME AUGMENT
  FASTSEP_NUM_THREADS=1 finetune_b "$WORK/backbone/last" "$WORK/backbone_$1" "$ARM_STEPS" "$2" \
     "$WORK/synth" "$WORK/recorded" "$WORK/game" "$WORK/adventure"
}
echo "== 2 the two arms, side by side (one thread each)"
arm all all & arm clean speed,overlap & wait
keep_state backbone_all
keep_state backbone_clean

echo "== 2b the average of each arm's checkpoints 5000-10000 (those its work folder holds)"
for a in all clean; do
  ck=(); for k in 05 06 07 08 09 10; do [[ -d "$WORK/backbone_$a/steps/00${k}000" ]] && ck+=("$WORK/backbone_$a/steps/00${k}000"); done
  if (( ${#ck[@]} >= 2 )); then fs average --out "$WORK/backbone_${a}_avg" "${ck[@]}"
  elif [[ "$a" == clean ]]; then rm -rf "$WORK/backbone_clean_avg" && cp -r "$STATE/backbone_average" "$WORK/backbone_clean_avg"
  fi
done

echo "== 3 backbone SI-SDRi on the unseen sets and the training talkers' valid splits, paired"
score() {  # score NAME MODEL_DIR SET SPLIT
  FASTSEP_NUM_THREADS=1 fs eval --data "$WORK/$3" --split "$4" --model "$2" --modes backbone \
     --segment 4 --max-items "$EVAL_ITEMS" --metrics si_sdr --json "$WORK/ablation_$1_$3.json" \
     --csv "$WORK/ablation_$1_$3.csv" --no-progress
}
for set in recorded:test festival:test steelsky:train adventure:valid game:valid; do
  s=${set%%:*}; split=${set##*:}
  score all "$WORK/backbone_all/last" "$s" "$split" & score clean "$WORK/backbone_clean/last" "$s" "$split" & wait
  fs compare "$WORK/ablation_all_$s.csv" "$WORK/ablation_clean_$s.csv"
  if [[ -d "$WORK/backbone_all_avg" && -d "$WORK/backbone_clean_avg" ]]; then
    score all_avg "$WORK/backbone_all_avg" "$s" "$split" & score clean_avg "$WORK/backbone_clean_avg" "$s" "$split" & wait
    fs compare "$WORK/ablation_all_avg_$s.csv" "$WORK/ablation_clean_avg_$s.csv"
  fi
done
fs plot curves "$WORK/backbone_all" "$WORK/backbone_clean" -o "$WORK/ablation_curves.png" --labels all,clean
