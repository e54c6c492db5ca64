#!/usr/bin/env bash
# Times a change against the build before it, in one session on one machine: CMD runs in a build of git revision BASE
# (a detached worktree with its own compiled extension) and in this tree, alternated ROUNDS times (base1, head1,
# base2, head2, ...), so that a drift of the machine's speed during the session lands on both sides.
#
#   bash benchmarks/compare_builds.sh BASE OUT 'python -m fastsep bench --lengths 4 --batch-sizes 1,8 --json $RUN.json'
#   ROUNDS=3 bash benchmarks/compare_builds.sh HEAD~1 /tmp/cmp 'python -m pytest benchmarks/bench_backbone.py -s'
#
# CMD is run by bash in the tree under test (its directory first on PYTHONPATH) with RUN set to OUT/<side><round>
# (write files as $RUN.json, $RUN.png); its output goes to OUT/<side><round>.log, whose first line names the fastsep
# package that was imported. The worktree (BASE_TREE, default OUT/.base-tree) and its build are reused when present;
# `git worktree remove OUT/.base-tree` drops it. Environment: ROUNDS (2), MAX_JOBS (2, for the base build).
set -euo pipefail
if (( $# != 3 )); then
  echo "usage: $0 BASE OUT CMD" >&2
  exit 2
fi
base=$1 out=$2 cmd=$3
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
tree="${BASE_TREE:-$out/.base-tree}"
rev="$(git -C "$root" rev-parse --verify "$base^{commit}")"
if [[ ! -d "$tree" ]]; then
  git -C "$root" worktree add -q --detach "$tree" "$rev"
fi
if [[ "$(git -C "$tree" rev-parse HEAD)" != "$rev" ]]; then
  echo "$tree holds $(git -C "$tree" rev-parse --short HEAD), not $base: remove it or set BASE_TREE" >&2
  exit 1
fi
if [[ ! -f "$tree/.built-$rev" ]]; then
  echo "== building $base ($rev) in $tree"
  (cd "$tree" && MAX_JOBS="${MAX_JOBS:-2}" python setup.py build_ext --inplace > "$out/base-build.log" 2>&1)
  touch "$tree/.built-$rev"
fi
for i in $(seq 1 "${ROUNDS:-2}"); do
  for side in base head; do
    dir=$root
    [[ $side == base ]] && dir=$tree
    echo "== $side $i"
    (
      cd "$dir"
      export PYTHONPATH="$dir${PYTHONPATH:+:$PYTHONPATH}" RUN="$out/$side$i"
      python -c "import fastsep; print('fastsep from', fastsep.__file__)"
      bash -c "$cmd"
    ) > "$out/$side$i.log" 2>&1
    tail -n 3 "$out/$side$i.log"
  done
done
