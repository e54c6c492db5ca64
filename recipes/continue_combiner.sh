#!/usr/bin/env bash
# F trained on: the default's combiner (150 steps from scratch, then 60-step refits on each new B and GM) trained on
# from its weights with the default's B and GM frozen, on the default's F data (the six corpora, Kokoro at weight
# 10, pairing within one corpus), and its checkpoints scored in full mode on the unseen sets, paired per mixture
# against the default (recipes/results/default_polarity/eval_<set>.csv). Asks whether F's short training is what
# keeps full mode's gain over the backbone small (+0.07 dB on recorded).
#
#   SKIP_CORPORA=1 bash recipes/continue_combiner.sh          # 400 steps (~4.7 s per step, one thread)
#   STEPS=1000 SCORE_STEPS="0000200 0000400 0001000" SKIP_CORPORA=1 bash recipes/continue_combiner.sh
#
# Writes $WORK/continue_combiner/{run,b_<step>} and copies the per-mixture CSVs to
# recipes/results/continue_combiner/. Not resumable mid-run beyond `fastsep train`'s own checkpoints.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
STEPS="${STEPS:-400}"; SCORE_STEPS="${SCORE_STEPS:-0000200 0000400}"; OUT="$WORK/continue_combiner"
DEST="$ROOT/fastsep/assets/default"; RESULTS="$ROOT/recipes/results/continue_combiner"
build_corpora

# the default's B and GM as model folders (fastsep train combiner takes model folders)
for part in backbone vocoder; do
  mkdir -p "$OUT/$part"
  cp "$DEST/$part.json" "$OUT/$part/model.json"; cp "$DEST/$part.safetensors" "$OUT/$part/$part.safetensors"
done
FASTSEP_NUM_THREADS="${THREADS:-1}" fs train combiner --data "$WORK/synth" "$WORK/recorded" "$WORK/game" \
   "$WORK/adventure" "$WORK/drascula" "$WORK/kokoro" --data-weights $KOKORO_DATA_WEIGHTS --backbone "$OUT/backbone" \
   --vocoder "$OUT/vocoder" --mix-within-corpus 1 --out "$OUT/run" --bundle-out "$OUT/bundle" --max-steps "$STEPS" \
   --valid-items 8 --checkpoint-every 100 --keep-every 200 --init-from "$DEST" --device "$DEVICE" --no-progress

mkdir -p "$RESULTS"
for step in $SCORE_STEPS; do
  bundle="$OUT/b_$step"
  [[ -d "$bundle" ]] || fs bundle separate-and-diffuse --backbone "$DEST" --vocoder "$DEST" \
     --combiner "$OUT/run/steps/$step" -o "$bundle"
  for src in recorded festival; do
    FASTSEP_NUM_THREADS=1 fs eval --data "$WORK/$src" --model "$bundle" --modes backbone,full --segment 4 \
       --max-items "${EVAL_ITEMS:-100}" --metrics si_sdr --csv "$RESULTS/f${step}_$src.csv" --no-progress
    fs compare "$ROOT/recipes/results/default_polarity/eval_$src.csv" "$RESULTS/f${step}_$src.csv"
  done
done
