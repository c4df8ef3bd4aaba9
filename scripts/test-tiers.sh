#!/usr/bin/env bash
# `make test`: lint, the fast tier and the slow tier in turn (stopping at the first that fails), each
# timed, then one line per tier with its time against its budget on a quiet 2-core machine. A tier over
# budget is reported, not failed: a loaded machine makes the tests slower, never red.
set -uo pipefail
cd "$(dirname "$0")/.."

tiers=(lint test-fast test-slow)
declare -A budget=([lint]=120 [test-fast]=180 [test-slow]=900)
total_budget=1200
declare -A took
status=0
start_all=$(date +%s)
for tier in "${tiers[@]}"; do
    start=$(date +%s)
    make --no-print-directory "$tier"
    status=$?
    took[$tier]=$(($(date +%s) - start))
    ((status == 0)) || break
done
total=$(($(date +%s) - start_all))

echo "--- test tiers (seconds, budget on a quiet machine) ---"
for tier in "${tiers[@]}"; do
    [[ -n ${took[$tier]:-} ]] || continue
    mark=""
    ((took[$tier] > budget[$tier])) && mark="  over budget"
    printf '%-10s %6d s  (budget %4d s)%s\n' "$tier" "${took[$tier]}" "${budget[$tier]}" "$mark"
done
mark=""
((total > total_budget)) && mark="  over budget"
printf '%-10s %6d s  (budget %4d s)%s\n' "total" "$total" "$total_budget" "$mark"
((status == 0)) || echo "make test: a tier failed (exit $status)"
exit "$status"
