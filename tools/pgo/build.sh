#!/usr/bin/env bash
# A profile-guided `dist` build of podmedic (BENCHMARKS.md, "As the release builds podmedic").
#
#   tools/pgo/build.sh                  # x86_64-unknown-linux-gnu, the binary in target/pgo/
#   TARGET=x86_64-unknown-linux-musl tools/pgo/build.sh
#   PGO_BOLT=1 tools/pgo/build.sh           # and BOLT (step 5): what BENCHMARKS.md measures
#   PGO_STAGES=profile tools/pgo/build.sh   # steps 1-3 only: target/pgo/podmedic.profdata
#   CARGO_BUILD_COMMAND=zigbuild TARGET=x86_64-unknown-linux-musl PGO_BOLT=try tools/pgo/build.sh
#                                           # the release workflow, on a runner of each architecture
#
# 1. builds podmedic instrumented (`-Cprofile-generate`), in the `dist` profile;
# 2. trains it: `podmedic serve` with a certificate of its own receives every captured
#    AdmissionReview of the repository (tests/fixtures/admission-reviews, gitops/ included, and the
#    benchmark bodies) on /mutate, /warn and /converge over keep-alive HTTPS connections, plus
#    health and metrics scrapes; then it stops on SIGTERM, which writes the profile;
# 3. merges the profile with the `llvm-profdata` of rustc's own LLVM;
# 4. builds the `dist` podmedic with that profile (`-Cprofile-use`): target/pgo/podmedic;
# 5. with PGO_BOLT=1 (x86_64 and aarch64 Linux; needs `llvm-bolt` and `merge-fdata` of LLVM 17 or
#    newer): lays the binary's code out again with BOLT, from a profile of the same training run on
#    a BOLT-instrumented copy, and strips it. Both builds then keep their symbols until the end
#    (BOLT needs them, and the relocations of `--emit-relocs`): Cargo's `strip` setting is part of
#    every symbol's hash, so the instrumented build must have it too, or no function of the
#    profile would match. (So is the target: a profile is made and used for one `--target`.)
#    PGO_BOLT=try ships the binary without BOLT, with a warning, when BOLT fails.
#
# Needs curl and an `llvm-profdata` whose LLVM major version is rustc's (`rustc -vV`): from
# `rustup component add llvm-tools`, or a distribution's `llvm-<major>` package; set LLVM_PROFDATA
# to choose one. Takes two `dist` builds (fat LTO): about 20 minutes on 2 cores.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
target=${TARGET:-x86_64-unknown-linux-gnu}
# `build`, or `zigbuild` (cargo-zigbuild) for static musl binaries.
build_command=${CARGO_BUILD_COMMAND:-build}
work=${PGO_DIR:-$root/target/pgo}
rounds=${PGO_ROUNDS:-40}
port=${PGO_PORT:-18643}
health_port=$((port + 1))

llvm_major=$(rustc -vV | sed -n 's/^LLVM version: \([0-9]*\).*/\1/p')
if [[ -z "${LLVM_PROFDATA:-}" ]]; then
    sysroot_tool="$(rustc --print sysroot)/lib/rustlib/$(rustc -vV | sed -n 's/^host: //p')/bin/llvm-profdata"
    if [[ -x "$sysroot_tool" ]]; then
        LLVM_PROFDATA=$sysroot_tool
    elif command -v "llvm-profdata-$llvm_major" >/dev/null; then
        LLVM_PROFDATA=$(command -v "llvm-profdata-$llvm_major")
    else
        echo "pgo: no llvm-profdata for LLVM $llvm_major (rustup component add llvm-tools, or install llvm-$llvm_major; or set LLVM_PROFDATA)" >&2
        exit 1
    fi
fi
if ! "$LLVM_PROFDATA" --version | grep -q "LLVM version $llvm_major\."; then
    echo "pgo: $LLVM_PROFDATA is not LLVM $llvm_major, rustc's: its profile would not be read" >&2
    exit 1
fi

# Trains `$1`: serves every captured AdmissionReview to it (see the top), then stops it with
# SIGTERM so that it writes its profile at exit.
train() {
    local binary=$1 server
    rm -f "$work/statuses"
    "$binary" certs --out "$work/certs" >/dev/null
    "$binary" serve --listen "127.0.0.1:$port" --metrics-listen "127.0.0.1:$health_port" \
        --tls-cert "$work/certs/tls.crt" --tls-key "$work/certs/tls.key" >"$work/serve.log" 2>&1 &
    server=$!
    trap 'kill "$server" 2>/dev/null || true' EXIT
    for _ in $(seq 100); do
        curl -fsS "http://127.0.0.1:$health_port/healthz" >/dev/null 2>&1 && break
        sleep 0.1
    done

    # One curl per endpoint and body: `rounds` requests over one keep-alive connection. The
    # certificate names the in-cluster Service, which --resolve points at the server.
    host=podmedic.podmedic-system.svc
    mapfile -t bodies < <(find tests/fixtures/admission-reviews crates/podmedic-engine/benches/fixtures -name '*.json' | sort)
    requests=0
    for body in "${bodies[@]}"; do
        for endpoint in mutate warn converge; do
            config="$work/curl.conf"
            : >"$config"
            for ((i = 0; i < rounds; i++)); do
                ((i > 0)) && printf 'next\n' >>"$config"
                printf 'url = "https://%s:%s/%s"\nresolve = "%s:%s:127.0.0.1"\ncacert = "%s"\ndata-binary = "@%s"\nheader = "content-type: application/json"\noutput = "/dev/null"\nwrite-out = "%%{http_code}\\n"\n' \
                    "$host" "$port" "$endpoint" "$host" "$port" "$work/certs/ca.crt" "$body" >>"$config"
            done
            # Each answer's status, one per line: 200, or 400 where an endpoint refuses a body that is
            # not for it (trained too).
            curl -sS -K "$config" >>"$work/statuses" 2>>"$work/curl.log" || true
            requests=$((requests + rounds))
        done
    done
    for _ in $(seq 20); do
        curl -fsS -o /dev/null "http://127.0.0.1:$health_port/metrics"
        curl -fsS -o /dev/null "http://127.0.0.1:$health_port/readyz" || true
    done
    kill -TERM "$server"
    wait "$server" || true
    trap - EXIT
    answered=$(grep -c '^200$' "$work/statuses" || true)
    echo "pgo: $requests admissions over ${#bodies[@]} bodies, $answered answered 200" >&2
    if ((answered < requests / 2)); then
        echo "pgo: training failed: most requests were not answered (see $work/curl.log)" >&2
        exit 1
    fi
}

bolt=${PGO_BOLT:-0}
if [[ "$bolt" != 0 ]]; then
    export CARGO_PROFILE_DIST_STRIP=false
    for tool in llvm-bolt merge-fdata; do
        # BOLT rewrites machine code: any LLVM 17 or newer does, not only rustc's own.
        found=$(command -v "$tool" || command -v "$tool-$llvm_major" || ls -d /usr/lib/llvm-*/bin/"$tool" 2>/dev/null | sort -V | tail -n 1 || true)
        [[ -n "$found" ]] || { echo "pgo: PGO_BOLT=$bolt needs $tool (LLVM 17 or newer)" >&2; exit 1; }
        declare "bolt_${tool//-/_}=$found"
    done
fi

rm -rf "$work/raw" "$work/certs" "$work/curl.log"
mkdir -p "$work/raw" "$work/certs"

# `cargo build --profile dist` of podmedic for the target into target dir `$1`, with rustc flags `$2`.
# Both builds go through here: a profile matches only a build with the same settings.
dist_build() {
    RUSTFLAGS="${RUSTFLAGS:-} $2" \
        cargo "$build_command" --locked --profile dist --target "$target" --bin podmedic --target-dir "$1"
}

echo "pgo: 1/4 instrumented build ($target)" >&2
dist_build "$work/target-generate" "-Cprofile-generate=$work/raw"
instrumented="$work/target-generate/$target/dist/podmedic"

echo "pgo: 2/4 training" >&2
# Where the instrumented runs write their profiles (whatever path the build was given).
LLVM_PROFILE_FILE="$work/raw/podmedic-%p-%m.profraw" train "$instrumented"

echo "pgo: 3/4 merge" >&2
"$LLVM_PROFDATA" merge -o "$work/podmedic.profdata" "$work/raw"

if [[ "${PGO_STAGES:-all}" == profile ]]; then
    echo "pgo: $work/podmedic.profdata" >&2
    exit 0
fi

echo "pgo: 4/4 dist build with the profile" >&2
use_flags="-Cprofile-use=$work/podmedic.profdata"
[[ "$bolt" != 0 ]] && use_flags+=" -Clink-arg=-Wl,--emit-relocs"
if ! dist_build "$work/target-use" "$use_flags"; then
    # A linker without --emit-relocs: the profile-guided binary, without BOLT.
    [[ "$bolt" == try ]] || exit 1
    echo "pgo: warning: the build with --emit-relocs failed; building without BOLT" >&2
    bolt=skipped
    dist_build "$work/target-use" "-Cprofile-use=$work/podmedic.profdata"
fi
built="$work/target-use/$target/dist/podmedic"

# BOLT, step 5: instrument, train, lay out. Returns non-zero when a step fails.
bolt_layout() {
    rm -rf "$work/bolt" && mkdir -p "$work/bolt"
    "$bolt_llvm_bolt" "$built" -instrument -o "$work/bolt/podmedic.instrumented" \
        --instrumentation-file="$work/bolt/podmedic" --instrumentation-file-append-pid >"$work/bolt/instrument.log" 2>&1 || return 1
    train "$work/bolt/podmedic.instrumented" || return 1
    "$bolt_merge_fdata" "$work"/bolt/podmedic.*.fdata >"$work/bolt/podmedic.fdata" 2>/dev/null || return 1
    # Blocks of hot functions laid out by their profile, hot functions next to their callers, cold
    # blocks split off into their own region, identical functions folded.
    "$bolt_llvm_bolt" "$built" -o "$work/bolt/podmedic.bolt" -data="$work/bolt/podmedic.fdata" \
        -reorder-blocks=ext-tsp -reorder-functions=cdsort -split-functions -split-all-cold -split-eh \
        -icf -use-gnu-stack >"$work/bolt/optimize.log" 2>&1 || return 1
    "$work/bolt/podmedic.bolt" --version >/dev/null || return 1
}

if [[ "$bolt" == skipped ]]; then
    strip -o "$work/podmedic" "$built"
elif [[ "$bolt" != 0 ]]; then
    echo "pgo: BOLT: instrument, train, lay out, strip" >&2
    if (bolt_layout); then
        strip -o "$work/podmedic" "$work/bolt/podmedic.bolt"
    elif [[ "$bolt" == try ]]; then
        echo "pgo: warning: BOLT failed (logs in $work/bolt); the binary is profile-guided only" >&2
        strip -o "$work/podmedic" "$built"
    else
        echo "pgo: BOLT failed (logs in $work/bolt)" >&2
        exit 1
    fi
else
    cp "$built" "$work/podmedic"
fi
echo "pgo: $work/podmedic" >&2
