#!/usr/bin/env bash
# Runs every cargo-fuzz target briefly on its committed corpus (fuzz/corpus/<target>).
# A crash fails the run and leaves its input in fuzz/artifacts/<target>/.
#   FUZZ_SECONDS=60 scripts/fuzz.sh            # longer runs
#   scripts/fuzz.sh aead_chunks                # one target
#   FUZZ_GROW=1 FUZZ_SECONDS=600 scripts/fuzz.sh  # grow the committed corpus
# Stable toolchain: cargo-fuzz's -Z flags are allowed with RUSTC_BOOTSTRAP=1, and
# --sanitizer none keeps to what stable rustc can build (coverage-guided libFuzzer).
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked --quiet
export RUSTC_BOOTSTRAP=1
targets=("$@")
[ "${#targets[@]}" -gt 0 ] || targets=(addr_decode aead_chunks sip022_header socks5_handshake http_authority ws_handshake stream_open)
cargo fuzz build --sanitizer none -O
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t"
  echo "== fuzz $t (${FUZZ_SECONDS:-5} s)"
  log="target/fuzz-$t.log"
  mkdir -p target
  # New inputs go to target/new-corpus/<target> (the committed corpus is read as seeds and
  # left as it is); FUZZ_GROW=1 writes them into corpus/<target> instead.
  dirs=("corpus/$t")
  if [ -z "${FUZZ_GROW:-}" ]; then
    mkdir -p "target/new-corpus/$t"
    dirs=("target/new-corpus/$t" "corpus/$t")
  fi
  if ! cargo fuzz run --sanitizer none -O "$t" "${dirs[@]}" -- \
      -max_total_time="${FUZZ_SECONDS:-5}" -timeout=10 -rss_limit_mb=2048 >"$log" 2>&1; then
    tail -40 "$log"
    echo "fuzz target $t failed (input in fuzz/artifacts/$t/)"
    exit 1
  fi
  grep -E "^Done" "$log" || true
done
