#!/usr/bin/env bash
# GM trained on: the default's vocoder (DiffWave 12 x 32, 3700 steps on recorded + game + synth; recipe step 3)
# trained on from its weights (a new run, fresh Adam: a run cannot resume mid-epoch on a larger file list) with the
# real studio casts B already trains on (the adventure game's 27 talkers,
# Drascula's 16) pooled in, since every unseen test source but festival is real recorded speech and GM's
# re-synthesis of it limits what full mode can add. Its state is kept as recipes/state/vocoder_real (the default's
# own, recipes/state/vocoder, stays as it is), so the run continues across sessions and machines.
#
#   SKIP_CORPORA=1 bash recipes/continue_vocoder.sh          # 3001 steps more (~2.2 s per step, one thread)
#   TOTAL=9001 SKIP_CORPORA=1 bash recipes/continue_vocoder.sh
#
# Interrupted, it resumes from its last checkpoint (every 100 steps) when run again. Score it against the default's
# GM with recipes/score_vocoder.sh.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
TOTAL="${TOTAL:-3001}"; RUN=vocoder_real
build_corpora

restore_state "$RUN"  # an interrupted run resumes from its own state; --init only seeds a new one
echo "== GM from the default's weights, $TOTAL steps with the real casts pooled in"
FASTSEP_NUM_THREADS="${THREADS:-1}" fs train vocoder --small --data "$WORK/recorded" "$WORK/game" "$WORK/synth" \
   "$WORK/adventure" "$WORK/drascula" --out "$WORK/$RUN" --sample-rate 8000 --hop-length 128 --n-mels 40 \
   --batch-size 8 --lr 4e-4 --max-steps "$TOTAL" --checkpoint-every 100 --keep-every 1000 --valid-items 4 \
   --valid-seconds 1 --num-workers 1 --init "$STATE/vocoder/last" --device "$DEVICE" --no-progress
keep_state "$RUN"
