#!/usr/bin/env bash
# Trains fastsep's bundled default model (8 kHz, 2 talkers) from nothing, and installs it in fastsep/assets/default.
#
#   bash recipes/train_default.sh                # full settings (hours on CPU; a GPU is much faster)
#   SMALL=1 bash recipes/train_default.sh        # ~45 min on 2 CPU cores: a demo-quality model
#
# Steps: 1) synthetic espeak-ng/flite corpus, 2) backbone B (Conv-TasNet small preset), 3) vocoder GM (small
# DiffWave) on the corpus's single-talker utterances, 4) combiner F with B and GM frozen, 5) bundle + SI-SDRi of the
# three modes on the corpus's test split (written next to the bundle as eval.json).
# Needs: espeak-ng and flite (apt-get install -y espeak-ng flite). Environment overrides: WORK (scratch folder),
# DEVICE (auto|cpu|cuda), BACKBONE (convtasnet|dprnn), and the step counts below.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WORK="${WORK:-$ROOT/runs/default}"
DEVICE="${DEVICE:-auto}"
BACKBONE="${BACKBONE:-convtasnet}"
DEST="${DEST:-$ROOT/fastsep/assets/default}"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"

if [[ "${SMALL:-0}" == "1" ]]; then
  CORPUS_ARGS=(--talkers 120 --hours 1)
  B_STEPS="${B_STEPS:-3000}";  GM_STEPS="${GM_STEPS:-400}";  F_STEPS="${F_STEPS:-100}"
  EVAL_ITEMS="${EVAL_ITEMS:-20}"; GM_VALID=(--valid-items 2 --valid-seconds 1)
else
  CORPUS_ARGS=(--talkers 120 --hours 3)
  B_STEPS="${B_STEPS:-50000}"; GM_STEPS="${GM_STEPS:-50000}"; F_STEPS="${F_STEPS:-10000}"
  EVAL_ITEMS="${EVAL_ITEMS:-500}"; GM_VALID=(--valid-items 4)
fi
fs() { python -m fastsep "$@"; }
# A run stopped by --max-steps inside its first epoch has no best/ yet; its last/ checkpoint holds the model then.
model_dir() { if [[ -f "$1/best/model.json" ]]; then echo "$1/best"; else echo "$1/last"; fi; }

echo "== 1/5 corpus -> $WORK/corpus"
fs corpus synth "$WORK/corpus" "${CORPUS_ARGS[@]}" --sample-rates 8000 --quiet

echo "== 2/5 backbone B ($BACKBONE, small preset)"
fs train separator --model "$BACKBONE" --small --data "$WORK/corpus" --out "$WORK/backbone" \
   --segment 2 --batch-size 4 --max-steps "$B_STEPS" --valid-items 16 --device "$DEVICE" --no-progress

echo "== 3/5 vocoder GM (small DiffWave, hop 128, 40 mels at 8 kHz)"
fs train vocoder --small --data "$WORK/corpus" --out "$WORK/vocoder" --sample-rate 8000 --hop-length 128 \
   --n-mels 40 --max-steps "$GM_STEPS" "${GM_VALID[@]}" --device "$DEVICE" --no-progress

echo "== 4/5 combiner F (B and GM frozen)"
fs train combiner --data "$WORK/corpus" --backbone "$(model_dir "$WORK/backbone")" --vocoder "$(model_dir "$WORK/vocoder")" \
   --out "$WORK/combiner" --bundle-out "$WORK/bundle" --max-steps "$F_STEPS" --valid-items 8 \
   --device "$DEVICE" --no-progress

echo "== 5/5 evaluate on the test split and install into $DEST"
fs eval --data "$WORK/corpus" --model "$WORK/bundle" --max-items "$EVAL_ITEMS" --json "$WORK/bundle/eval.json" \
   --no-progress
rm -rf "$DEST.tmp" && cp -r "$WORK/bundle" "$DEST.tmp" && rm -rf "$DEST" && mv "$DEST.tmp" "$DEST"
du -sh "$DEST"
echo "done: Separator.from_pretrained() now loads $DEST"
