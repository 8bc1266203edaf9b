#!/usr/bin/env bash
# Runs every fuzz target for FUZZ_SECONDS (default 60) on stable Rust, without
# sanitizers. Corpora live in fuzz/corpus/<target> (gitignored), seeded from
# fuzz/seeds/<target>; crashes land in fuzz/artifacts/<target>/.
#   FUZZ_SECONDS=600 bash fuzz/run.sh            # all targets, 10 min each
#   bash fuzz/run.sh cache_key                    # one target
# Extra libFuzzer flags: FUZZ_ARGS="-jobs=2 -workers=2".
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")"
FUZZ_SECONDS="${FUZZ_SECONDS:-60}"
FUZZ_ARGS="${FUZZ_ARGS:-}"

if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(config cache_key request_filters geo_database)
fi

# One build for all targets (the first one compiles pingora with coverage
# instrumentation and takes a while).
cargo fuzz build --sanitizer none

status=0
for target in "${targets[@]}"; do
    corpus="corpus/$target"
    mkdir -p "$corpus" "artifacts/$target"
    cp -n "seeds/$target"/* "$corpus"/ 2>/dev/null || true
    echo "=== $target: ${FUZZ_SECONDS}s ==="
    # shellcheck disable=SC2086 # FUZZ_ARGS is a list of flags
    if ! cargo fuzz run --sanitizer none "$target" "$corpus" -- \
        -max_total_time="$FUZZ_SECONDS" -rss_limit_mb=4096 $FUZZ_ARGS; then
        echo "=== $target FAILED: see fuzz/artifacts/$target/ ===" >&2
        status=1
    fi
done
exit $status
