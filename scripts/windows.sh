#!/usr/bin/env bash
# Cross-builds burrow-local and burrow-server for Windows (x86_64-pc-windows-gnu) and prepares
# Wine to run them on this Debian machine. The README (On Windows) says what differs there.
#   scripts/windows.sh [cargo args…]   e.g. --release: set up (once) and build; prints the .exe paths
#   scripts/windows.sh env [--release] prints `export` lines for tests: eval "$(scripts/windows.sh env)"
# Env overrides: BURROW_WINDOWS_CACHE (default ~/.cache/burrow-windows), BURROW_DEBIAN_MIRROR,
# BURROW_WINDOWS_ROOT and BURROW_WINDOWS_BUILD (cargo's package/bin arguments).
set -euo pipefail

TARGET=x86_64-pc-windows-gnu
ROOT="${BURROW_WINDOWS_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
# What to build: the two programs of the root package, unless told otherwise.
BUILD="${BURROW_WINDOWS_BUILD:--p burrow --bin burrow-local --bin burrow-server}"
CACHE="${BURROW_WINDOWS_CACHE:-$HOME/.cache/burrow-windows}"
WINE=/usr/lib/wine/wine64           # the 64-bit loader itself (/usr/bin/wine nags for wine32)
PREFIX="$CACHE/wineprefix"          # our own Wine "C: drive", never the user's ~/.wine
DLL="$CACHE/bcryptprimitives.dll"   # test-host stand-in for a DLL Wine 8 lacks; never shipped
die() { echo "windows.sh: $*" >&2; exit 1; }
say() { echo "==> $*" >&2; }

# The cargo profile named by the arguments decides the output folder (dev builds go to "debug").
profile_dir() {
  local p=debug
  while [ $# -gt 0 ]; do
    case "$1" in --release|-r) p=release ;; --profile) shift; p="${1:-dev}" ;;
      --profile=*) p="${1#--profile=}" ;; esac; shift
  done
  [ "$p" = dev ] && p=debug; echo "$p"
}
test_dir() { echo "$ROOT/target/windows/$TARGET/$(profile_dir "$@")/wine-test"; }

if [ "${1:-}" = env ]; then
  shift
  [ -x "$WINE" ] || die "$WINE missing: run scripts/windows.sh first"
  [ -f "$DLL" ] && [ -f "$PREFIX/system.reg" ] || die "$DLL or $PREFIX missing: run scripts/windows.sh first"
  printf 'export WINEPREFIX=%q\nexport WINEDEBUG=-all\nexport WINEARCH=win64\n' "$PREFIX"
  printf 'export BURROW_WINE=%q\nexport BURROW_WINE_DLL=%q\nexport BURROW_WINE_TEST_DIR=%q\n' \
    "$WINE" "$DLL" "$(test_dir "$@")"
  exit 0
fi

# (a) Packages: the MinGW cross compiler/linker, nasm (aws-lc-sys assembles with it for
#     Windows) and Wine 8. Installed only when missing; sudo only when we are not root.
SUDO=; [ "$(id -u)" -eq 0 ] || SUDO=sudo
missing=()
for p in gcc-mingw-w64-x86-64 nasm wine64 wine; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing ${missing[*]}"
  $SUDO apt-get update -q >&2
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >&2
fi
for c in x86_64-w64-mingw32-gcc nasm cargo rustc dpkg-deb; do
  command -v "$c" >/dev/null || die "$c not found on PATH"
done
[ -x "$WINE" ] || die "$WINE missing after installing wine64"

# (b) The standard library's source, for -Zbuild-std (rustup cannot add the target here).
#     Debian's rust-src of exactly our rustc version comes from trixie-backports, fetched
#     with a private apt config into the cache, unpacked there, never installed.
VER="$(rustc -V | awk '{print $2}')"
SYSROOT="$(rustc --print sysroot)"
LINK="$SYSROOT/lib/rustlib/src/rust"
SRC="$CACHE/rust-src-$VER/usr/src/rustc-$VER"
if [ ! -f "$LINK/library/std/Cargo.toml" ] || { [ -L "$LINK" ] && [ "$(readlink "$LINK")" != "$SRC" ]; }; then
  if [ ! -f "$SRC/library/std/Cargo.toml" ]; then
    MIRROR="${BURROW_DEBIAN_MIRROR:-$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
      /etc/apt/sources.list.d/*.sources 2>/dev/null | sed -nE \
      -e 's#^URIs:[[:space:]]*([^[:space:]]*/debian)/?([[:space:]].*)?$#\1#p' \
      -e 's#^deb[[:space:]]+(\[[^]]*\][[:space:]]+)?([^[:space:]]*/debian)/?[[:space:]].*#\2#p' | head -n1 || true)}"
    [ -n "$MIRROR" ] || die "no Debian mirror in /etc/apt/sources.list*; set BURROW_DEBIAN_MIRROR"
    APT="$CACHE/apt"; mkdir -p "$APT/lists/partial" "$APT/archives/partial" "$APT/parts" "$CACHE/debs"
    echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $MIRROR trixie-backports main" >"$APT/sources.list"
    opts=(-o "Dir::Etc::SourceList=$APT/sources.list" -o "Dir::Etc::SourceParts=$APT/parts"
          -o "Dir::State::Lists=$APT/lists" -o "Dir::Cache=$APT" -o Dir::Cache::pkgcache=
          -o Dir::Cache::srcpkgcache=)
    [ "$(id -u)" -eq 0 ] && opts+=(-o APT::Sandbox::User=root)  # _apt cannot write our cache
    say "fetching rust-src $VER from $MIRROR trixie-backports"
    apt-get "${opts[@]}" -q update >&2
    DEBVER="$(apt-cache "${opts[@]}" madison rust-src | awk -v v="$VER" '$3 ~ "^" v "[+]" {print $3; exit}')"
    [ -n "$DEBVER" ] || die "trixie-backports has no rust-src for rustc $VER (it carries 1.93-1.98)"
    (cd "$CACHE/debs" && apt-get "${opts[@]}" -q download "rust-src=$DEBVER" >&2)
    rm -rf "$CACHE/rust-src-$VER.tmp"
    dpkg -x "$CACHE/debs/rust-src_${DEBVER/:/%3a}_all.deb" "$CACHE/rust-src-$VER.tmp"
    rm -rf "$CACHE/rust-src-$VER"; mv "$CACHE/rust-src-$VER.tmp" "$CACHE/rust-src-$VER"
  fi
  [ -f "$SRC/library/std/Cargo.toml" ] || die "$SRC has no library/std"
  mkdir -p "$(dirname "$LINK")"
  [ -e "$LINK" ] && [ ! -L "$LINK" ] && die "$LINK exists and is not our link; move it away"
  ln -sfn "$SRC" "$LINK" || die "cannot link $LINK -> $SRC"
  say "linked $LINK -> $SRC"
fi

# (c) Test host only: Rust's std imports ProcessPrng from bcryptprimitives.dll, which Wine 8
#     lacks (the .exe exits with c0000135). This stand-in forwards it to RtlGenRandom.
if [ ! -f "$DLL" ]; then
  mkdir -p "$CACHE"; cat > "$CACHE/processprng.c" <<'EOF'
#include <windows.h>
#include <ntsecapi.h>
__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE d, SIZE_T n) { return RtlGenRandom(d, (ULONG)n); }
EOF
  x86_64-w64-mingw32-gcc -O2 -shared -o "$DLL.tmp" "$CACHE/processprng.c" -ladvapi32
  mv "$DLL.tmp" "$DLL"; say "built $DLL"
fi
# Boot our Wine prefix once now, so tests do not pay for it (~8 s) on their first run.
if [ ! -f "$PREFIX/system.reg" ]; then
  say "creating Wine prefix $PREFIX"
  WINEPREFIX="$PREFIX" WINEDEBUG=-all WINEARCH=win64 "$WINE" wineboot -i >&2
  WINEPREFIX="$PREFIX" /usr/lib/wine/wineserver -w
fi

# (d) Build std and our binaries for Windows, in their own target dir.
cd "$ROOT"
read -r -a pkgs <<< "$BUILD"
say "building ${BUILD} for $TARGET $*"
exes="$(RUSTC_BOOTSTRAP=1 CARGO_TARGET_X86_64_PC_WINDOWS_GNU_LINKER=x86_64-w64-mingw32-gcc \
  cargo build -Zbuild-std=std,panic_abort --target "$TARGET" --target-dir target/windows \
  "${pkgs[@]}" --message-format=json-render-diagnostics "$@" \
  | sed -nE 's/.*"executable":"([^"]+\.exe)".*/\1/p')"
[ -n "$exes" ] || die "cargo built no .exe"
# Copies for Wine tests go to a separate folder with the stand-in DLL beside them.
TEST="$(test_dir "$@")"; mkdir -p "$TEST"; cp "$DLL" "$TEST/"
echo "Windows executables (ship these):"
while read -r e; do echo "  $e"; cp "$e" "$TEST/"; done <<< "$exes"
echo "Wine test copies (with the stand-in bcryptprimitives.dll): $TEST"
echo "Run: eval \"\$(scripts/windows.sh env $*)\"; \$BURROW_WINE \$BURROW_WINE_TEST_DIR/NAME.exe"
