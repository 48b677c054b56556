#!/usr/bin/env bash
# Fuzz smoke run: every cargo-fuzz target for a short, fixed time.
#
#   fuzz/smoke.sh [SECONDS_PER_TARGET]      (default 15, or $FUZZ_SECONDS)
#
# Works on the stable toolchain: RUSTC_BOOTSTRAP=1 lets cargo-fuzz pass its -Z flags
# (AddressSanitizer, coverage instrumentation). Installs cargo-fuzz from crates.io if it
# is missing. Exits non-zero if any target crashes, leaks, times out or fails to build;
# the crashing inputs are left in fuzz/artifacts/<target>/.
set -euo pipefail

seconds="${1:-${FUZZ_SECONDS:-15}}"
if ! [[ "$seconds" =~ ^[0-9]+$ ]] || [ "$seconds" -lt 1 ]; then
    echo "usage: $0 [SECONDS_PER_TARGET]" >&2
    exit 2
fi

cd "$(dirname "${BASH_SOURCE[0]}")/.."

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

export RUSTC_BOOTSTRAP=1

echo "== building fuzz targets ($(cargo fuzz --version))"
cargo fuzz build

mapfile -t targets < <(cargo fuzz list)
if [ "${#targets[@]}" -eq 0 ]; then
    echo "no fuzz targets found" >&2
    exit 1
fi

failed=()
for target in "${targets[@]}"; do
    echo "== fuzzing $target for ${seconds}s"
    mkdir -p "fuzz/corpus/$target"
    start=$SECONDS
    # -timeout: an input that runs this long counts as a hang (a failure).
    if cargo fuzz run "$target" -- -max_total_time="$seconds" -timeout=10 -print_final_stats=1 \
        >"fuzz/smoke-$target.log" 2>&1; then
        runs=$(grep -Eo '^stat::number_of_executed_units: *[0-9]+' "fuzz/smoke-$target.log" | grep -Eo '[0-9]+$' || echo '?')
        echo "   ok: $runs runs in $((SECONDS - start))s"
        rm -f "fuzz/smoke-$target.log"
    else
        echo "   FAILED: $target (log: fuzz/smoke-$target.log, inputs: fuzz/artifacts/$target/)"
        tail -n 40 "fuzz/smoke-$target.log" | sed 's/^/   | /'
        failed+=("$target")
    fi
done

if [ "${#failed[@]}" -ne 0 ]; then
    echo "fuzz smoke: ${#failed[@]} of ${#targets[@]} targets failed: ${failed[*]}" >&2
    exit 1
fi
echo "fuzz smoke: all ${#targets[@]} targets ran ${seconds}s each without a crash"
