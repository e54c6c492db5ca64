#!/usr/bin/env bash
# Which backbone for this CPU: the four architectures fastsep has, each at ~0.4-0.6 M parameters with the default's
# 2 ms encoder hop, trained from scratch for the same CPU time on the default's data, then scored on the unseen
# sources. Equal CPU time, not equal steps: on a CPU-only machine training time is the budget, so a backbone that
# costs more per step must earn it in fewer steps.
#
#   SKIP_CORPORA=1 bash recipes/compare_backbones.sh
#
# Arms (ARCHS, default all four), side by side with one thread each (the OS shares the cores between them;
# --max-cpu-minutes counts each run's own CPU time, so contention does not change the budget). Their constructor
# arguments are in recipes/compare_backbones.json, which benchmarks/bench_training.py times too:
#   convtasnet  the default's B architecture (DEFAULT_B_ARGS: 16 blocks of 64/128 channels, 0.44 M)
#   dprnn       DPRNN, 64 filters of 32 samples at hop 16, 3 dual-path blocks of 64-unit BLSTMs, chunks of 50 (0.48 M)
#   sepformer   SepFormer, same encoder, 2 blocks of 2 intra + 2 inter transformer layers (4 heads, FFN 256; 0.43 M)
#   mulcat      MulCat, same encoder, 2 blocks of 64-unit multiply-and-concatenate BLSTMs, chunks of 50 (0.64 M)
# Data and settings as the default's last B stage (recipes/train_default.sh 2e): synth, recorded, game, adventure,
# drascula and kokoro at --data-weights 1 1 1 1 1 10, both talkers from one corpus, speed and overlap augmentation,
# levels U[0, 8] dB, batch 4 x 2 s; lr 1e-3 fixed for all (no warm-up), seed 0; a checkpoint kept every 500 steps.
# Then backbone SI-SDRi of each arm's last model on 100 fixed mixtures per set (recorded, festival, steelsky: unseen
# sources; synth test: the training engines' held-out talkers), paired against convtasnet.
#
# A larger CPU_MINUTES resumes runs already there to the new budget (their CPU time is kept in the checkpoints).
# Environment: ARCHS, CPU_MINUTES (30), EVAL_ITEMS (100), WORK, DEVICE, SKIP_CORPORA, SKIP_TRAIN.
# Writes $WORK/compare_backbones/<arch>/ (runs) and cpu<CPU_MINUTES>/<arch>_<set>.csv/.json (scores).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"  # ROOT, WORK, DEVICE, STATE; helpers
ARCHS="${ARCHS:-convtasnet dprnn sepformer mulcat}"; OUT="$WORK/compare_backbones"
ARGS_FILE="$ROOT/recipes/compare_backbones.json"  # each architecture's constructor arguments (also benchmarked)
model_args() { python -c 'import json, sys; print(json.dumps(json.load(open(sys.argv[1]))[sys.argv[2]], separators=(",", ":")))' "$ARGS_FILE" "$1"; }
build_corpora
build_kokoro
data=("$WORK/synth" "$WORK/recorded" "$WORK/game" "$WORK/adventure" "$WORK/drascula" "$WORK/kokoro")
mkdir -p "$OUT"
if [[ "${SKIP_TRAIN:-0}" != 1 ]]; then
  echo "== $ARCHS side by side, ${CPU_MINUTES:-30} CPU minutes each (from scratch; a run already in OUT goes on to that budget)"
  for a in $ARCHS; do
    args=$(model_args "$a") || { echo "unknown architecture $a (see $ARGS_FILE)" >&2; exit 1; }
    FASTSEP_NUM_THREADS=1 fs train separator --model "$a" --model-args "$args" --data "${data[@]}" \
      --out "$OUT/$a" --segment 2 --batch-size 4 --train-items 2000 --valid-items 32 --augment speed,overlap \
      --level-range 0 8 --mix-within-corpus 1 --data-weights $KOKORO_DATA_WEIGHTS --lr 1e-3 --patience 0 \
      --early-stop 0 --checkpoint-every 200 --keep-every 500 --num-workers 1 --max-cpu-minutes "${CPU_MINUTES:-30}" \
      --device "$DEVICE" --no-progress > "$OUT/$a.log" 2>&1 &
  done
  wait
fi
echo "== backbone SI-SDRi on the unseen sources and synth's held-out talkers, paired against convtasnet"
arms=(); for a in $ARCHS; do [[ $a == convtasnet ]] || arms+=("$a:$OUT/$a/last"); done
scores="$OUT/cpu${CPU_MINUTES:-30}"; mkdir -p "$scores"  # one folder per budget: a longer run never reuses old tables
SCORE_SETS="${SCORE_SETS:-recorded:test festival:test steelsky:train synth:test}" \
  score_pair "$scores" convtasnet:"$OUT/convtasnet/last" "${arms[@]}"
