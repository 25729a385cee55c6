#!/usr/bin/env bash
# bench/prefix/run.sh --quick (tiny model, 2 groups x 3 questions behind a
# 64-token system prompt, one request in flight): the run completes, the
# cold server caches nothing, and the warm one serves exactly the system
# prompts of the 2nd and 3rd question of each group from its cache
# (2 x 2 x 64 = 256 of 6 x 72 = 432 prompt tokens).
set -u
root=${1:?usage: bench_prefix.sh SOURCE-DIR}
out=$(bash "$root/bench/prefix/run.sh" --quick 2>&1) || { echo "$out"; echo "FAIL: bench/prefix exited $?"; exit 1; }
echo "$out"
echo "$out" | grep -Eq '^round 1 cold .* cached share 0\.000 \(0 of 0 prompt tokens\)$' || { echo "FAIL: the cold run"; exit 1; }
echo "$out" | grep -Eq '^round 1 warm .* cached share 0\.593 \(256 of 432 prompt tokens\)$' || { echo "FAIL: the warm run's cached share"; exit 1; }
echo "$out" | grep -Eq '^warm / cold of the mean request: [0-9.]+; 1 - cached share: 0\.407 ' || { echo "FAIL: no summary"; exit 1; }
echo "ok: bench/prefix --quick"
