#!/usr/bin/env bash
# `make test`: the C test runner (every TEST of tests/*.c), then the command-line checks of
# tests/cli_test.sh, and one total line "N passed, N failed" last. FILTER (a substring of
# test names) runs only the matching C tests, and the CLI checks only when it is "cli".
#   bash tests/run.sh BUILD_DIR [FILTER]
set -u
B=${1:-build}
F=${2:-}
log=$(mktemp)
trap 'rm -f "$log"' EXIT
total_pass=0
total_fail=0
add() { # the last "N passed, N failed" line of the log, added to the totals
    local line
    line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$log" | tail -1)
    if [ -z "$line" ]; then total_fail=$((total_fail + 1)); return; fi
    total_pass=$((total_pass + $(echo "$line" | cut -d' ' -f1)))
    total_fail=$((total_fail + $(echo "$line" | cut -d' ' -f3)))
}
if [ "$F" != cli ]; then
    "$B/elbo_tests" $F | tee "$log"
    add
fi
if [ -z "$F" ] || [ "$F" = cli ]; then
    echo "command-line checks (tests/cli_test.sh):"
    bash tests/cli_test.sh "$B/elbo" | tee "$log"
    add
fi
echo "$total_pass passed, $total_fail failed"
[ "$total_fail" -eq 0 ]
