#!/bin/sh
# Run every cargo-fuzz target for a while (default 20 s each); fail on the first crash.
#   scripts/fuzz-smoke.sh [SECONDS]
# Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`). Corpora live
# in fuzz/corpus/<target> (seeded from fuzz/seeds/<target>); crashes in fuzz/artifacts/.
set -eu
seconds=${1:-20}
cd "$(dirname "$0")/../fuzz"
targets=$(cargo +nightly fuzz list)
for target in $targets; do
    mkdir -p "corpus/$target"
    if [ -d "seeds/$target" ]; then
        cp -n "seeds/$target"/* "corpus/$target/" 2>/dev/null || true
    fi
    echo "fuzz-smoke: $target for ${seconds}s" >&2
    # libFuzzer prints a line per new input: keep it in a log, show the summary, and
    # the whole tail (the crash, its input's path) when it fails.
    log=$(mktemp)
    if ! cargo +nightly fuzz run "$target" "corpus/$target" -- \
        -max_total_time="$seconds" -max_len=8192 -print_final_stats=1 >"$log" 2>&1; then
        tail -n 60 "$log" >&2
        rm -f "$log"
        echo "fuzz-smoke: $target FAILED (artifacts in fuzz/artifacts/$target)" >&2
        exit 1
    fi
    grep -E '^(Done [0-9]+ runs|stat::number_of_executed_units|stat::peak_rss_mb)' "$log" >&2 || true
    rm -f "$log"
done
