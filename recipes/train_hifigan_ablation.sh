#!/usr/bin/env bash
# The paper's deterministic-vocoder ablation: the default's GM (DiffWave) replaced by a HiFi-GAN, F fine-tuned on it,
# scored on the unseen test sets beside the default. One command; each step resumes after an interruption.
#
#   bash recipes/train_hifigan_ablation.sh              # the generator kept in recipes/state/hifigan (1891 steps) as is
#   HG_STEPS=8000 bash recipes/train_hifigan_ablation.sh  # train the HiFi-GAN (further) to 8000 steps in this work
#                                                         # folder, starting from the kept generator if it has none
#
# 1) HiFi-GAN.small (0.9 M generator, small multi-period + multi-scale discriminators; LS-GAN + 2 x feature matching
#    + 45 x mel L1) on the data the default's GM trained on (recorded + game + synth, 8 kHz, hop 128, 40 mels).
#    A killed run resumes from WORK/hifigan/last (generator, discriminators, both optimisers: 24 MB, not kept in the
#    repo); the repo keeps the generator alone (3.5 MB, recipes/state/hifigan/generator), from which a new machine
#    continues with fresh discriminators (--init).
# 2) F fine-tuned F_STEPS steps from the default's F with the default's B and the HiFi-GAN as GM (as the default's F
#    was fine-tuned on each new GM), bundled in WORK/bundle_hifigan.
# 3) fastsep eval of that bundle (backbone, xcorr, full; every metric; the vocoder's re-synthesis of the clean
#    sources) on recorded, festival and steelsky: recipes/results/hifigan_ablation/eval_<set>.json. Its backbone is the
#    default's B, so full - backbone here compares with the default's own full - backbone (fastsep/assets/default/
#    eval_<set>.json) on the same fixed mixtures.
#
# What the kept generator took: see recipes/results/hifigan_ablation/README.md.
# Environment overrides: WORK, DEVICE, HG_STEPS, F_STEPS, EVAL_ITEMS.
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/common.sh"  # ROOT, WORK, DEVICE, STATE, PYTHONPATH; helpers
DEFAULT="$ROOT/fastsep/assets/default"
RESULTS="$ROOT/recipes/results/hifigan_ablation"
HG_STEPS="${HG_STEPS:-0}"; F_STEPS="${F_STEPS:-60}"; EVAL_ITEMS="${EVAL_ITEMS:-100}"
build_corpora

echo "== 2 HiFi-GAN (to $HG_STEPS steps in this work folder; 0 uses the generator as it is)"
if (( HG_STEPS > 0 )); then
  init=(); [[ ! -d "$WORK/hifigan/last" && -f "$STATE/hifigan/generator/model.json" ]] && \
    init=(--init "$STATE/hifigan/generator")
  fs train hifigan --small --data "$WORK/recorded" "$WORK/game" "$WORK/synth" --out "$WORK/hifigan" \
     --sample-rate 8000 --hop-length 128 --n-mels 40 --batch-size 8 --max-steps "$HG_STEPS" --checkpoint-every 200 \
     --valid-items 4 --valid-seconds 1 --num-workers 1 --device "$DEVICE" --no-progress "${init[@]}"
fi
if [[ -f "$WORK/hifigan/last/model.json" ]]; then
  GEN="$WORK/hifigan/last"
  rm -rf "$STATE/hifigan.tmp" && mkdir -p "$STATE/hifigan.tmp/generator"
  cp "$GEN/model.json" "$GEN/model.safetensors" "$STATE/hifigan.tmp/generator/"
  cp "$WORK/hifigan/log.jsonl" "$STATE/hifigan.tmp/"
  swap_state hifigan
else
  GEN="$STATE/hifigan/generator"
fi

echo "== 3 F on the default's B and the HiFi-GAN"
fs train combiner --data "$WORK/synth" "$WORK/recorded" "$WORK/game" "$WORK/adventure" \
   --backbone "$STATE/backbone/last" --vocoder "$GEN" --out "$WORK/combiner_hifigan" \
   --bundle-out "$WORK/bundle_hifigan" --max-steps "$F_STEPS" --valid-items 8 --init-from "$DEFAULT" \
   --device "$DEVICE" --no-progress

echo "== 4 evaluate on unseen voices and sources"
mkdir -p "$RESULTS"
for src in recorded festival steelsky; do
  split=test; [[ "$src" == steelsky ]] && split=train  # steelsky: no talker of it trained the default
  FASTSEP_NUM_THREADS=1 fs eval --data "$WORK/$src" --split "$split" --model "$WORK/bundle_hifigan" --segment 4 \
     --max-items "$EVAL_ITEMS" --metrics all --vocoder-quality --json "$RESULTS/eval_$src.json" \
     --csv "$RESULTS/eval_$src.csv" --no-progress
done
echo "done: $RESULTS"
