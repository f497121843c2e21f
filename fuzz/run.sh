#!/usr/bin/env bash
# Runs each libFuzzer target for a few seconds on a copy of its seed corpus.
#   bash fuzz/run.sh BUILD_DIR SECONDS NAME...     (make fuzz-run FUZZ_SECONDS=N)
# One line per target, "ok   fuzz_<name> (<execs> execs)" or "FAIL fuzz_<name>" (then the
# fuzzer's report, and the crashing input is kept in BUILD_DIR/crashes/), and a last line
# "N passed, N failed". Exit status 1 when any target failed.
set -uo pipefail
build=$1; secs=$2; shift 2
root=$(cd "$(dirname "$0")" && pwd)
build=$(cd "$build" && pwd) || exit 1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
pass=0; fail=0
for name in "$@"; do
  bin="$build/fuzz_$name"
  dir="$work/$name"; mkdir -p "$dir/corpus" "$dir/art"
  [ -d "$root/corpus/$name" ] && cp "$root/corpus/$name"/* "$dir/corpus/" 2>/dev/null
  log="$dir/log.txt"
  if [ -x "$bin" ] &&
     (cd "$dir" && "$bin" -max_total_time="$secs" -timeout=20 -print_final_stats=1 \
        -artifact_prefix="$dir/art/" "$dir/corpus" >"$log" 2>&1); then
    execs=$(sed -n 's/^stat::number_of_executed_units: *\([0-9]*\).*/\1/p' "$log" | tail -1)
    echo "ok   fuzz_$name (${execs:-?} execs)"; pass=$((pass + 1))
  else
    echo "FAIL fuzz_$name"; fail=$((fail + 1))
    grep -E 'ERROR|SUMMARY|#[0-9]+ 0x' "$log" 2>/dev/null | head -30 | sed 's/^/    /'
    if compgen -G "$dir/art/*" >/dev/null; then
      mkdir -p "$build/crashes/$name"; cp "$dir/art/"* "$build/crashes/$name/"
      echo "    crashing input(s) kept in $build/crashes/$name/"
    fi
  fi
done
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
