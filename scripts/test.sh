#!/usr/bin/env bash
# Runs every test. Installs the peers the tests drive when they are missing (curl,
# shadowsocks-libev, shadowsocks-v2ray-plugin, simple-obfs, Chromium, iproute2, squid,
# apache2-utils, microsocks, nginx-light, gsettings with GNOME's schemas, an
# MIT Kerberos KDC and client from Debian, with libkrb5-dev and libclang-dev to
# build the negotiate feature, libssl-dev and pkg-config for the OpenSSL AEAD; ws and playwright-core from npm into tests/browser;
# pyspnego and mitmproxy from PyPI; mingw-w64, nasm and Wine for the Windows programs, through
# scripts/windows.sh), so it works on a fresh Debian machine.
set -euo pipefail
cd "$(dirname "$0")/.."
# A one-off run gains nothing from incremental caches (hundreds of MB); set it to 1 to keep them.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

need=()
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v ss-server >/dev/null 2>&1 || need+=(shadowsocks-libev)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
# nftables: tests/laptop.rs silences warm connections inside a namespace of its own.
command -v nft >/dev/null 2>&1 || need+=(nftables)
command -v node >/dev/null 2>&1 || need+=(nodejs npm)
command -v squid >/dev/null 2>&1 || need+=(squid)
command -v htpasswd >/dev/null 2>&1 || need+=(apache2-utils)
command -v microsocks >/dev/null 2>&1 || need+=(microsocks)
command -v nginx >/dev/null 2>&1 || need+=(nginx-light)
# SIP003 plugins (tests/plugins.rs): v2ray-plugin's server and client, simple-obfs.
command -v ss-v2ray-plugin >/dev/null 2>&1 || need+=(shadowsocks-v2ray-plugin)
command -v obfs-local >/dev/null 2>&1 || need+=(simple-obfs)
# GNOME's proxy settings (tests/cli.rs: --system-proxy on a Linux desktop, on a keyfile).
command -v gsettings >/dev/null 2>&1 || need+=(libglib2.0-bin)
[ -f /usr/share/glib-2.0/schemas/org.gnome.system.proxy.gschema.xml ] || need+=(gsettings-desktop-schemas)
# Samba's ntlm_auth: Wine's SSPI does NTLM through it (tests/windows.rs, burrow-local.exe).
command -v ntlm_auth >/dev/null 2>&1 || need+=(winbind)
command -v krb5kdc >/dev/null 2>&1 || need+=(krb5-kdc)
command -v kadmin.local >/dev/null 2>&1 || need+=(krb5-admin-server)
command -v kinit >/dev/null 2>&1 || need+=(krb5-user)
command -v krb5-config >/dev/null 2>&1 || need+=(libkrb5-dev)
# bindgen wants libclang itself (libclang.so), not libclang-cpp, which other packages bring.
[ -n "$(ls /usr/lib/llvm-*/lib/libclang.so* 2>/dev/null)" ] || need+=(libclang-dev)
# OpenSSL's libcrypto, one of the AEAD implementations (the openssl feature the tests build).
command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)
[ -f /usr/include/openssl/evp.h ] || need+=(libssl-dev)
if [ "${#need[@]}" -gt 0 ]; then
  echo "== installing test peers: ${need[*]}"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# shadowsocks-rust for SIP022 interop: a long build, done once and kept in ~/.cargo/bin.
if ! command -v ssserver >/dev/null 2>&1 || ! command -v sslocal >/dev/null 2>&1; then
  echo "== installing shadowsocks-rust (cargo install, several minutes, once)"
  cargo install shadowsocks-rust --locked --version 1.25.0 --quiet
fi

# pyspnego: the NTLM acceptor behind the test's NTLM-only proxy (tests/peers/ntlm_proxy.py).
if ! python3 -c "import spnego" >/dev/null 2>&1; then
  echo "== installing pyspnego (PyPI)"
  python3 -m pip install --quiet pyspnego
fi

# mitmproxy: the TLS-inspecting corporate proxy of tests/corporate.rs.
if ! command -v mitmdump >/dev/null 2>&1; then
  echo "== installing mitmproxy (PyPI)"
  python3 -m pip install --quiet mitmproxy
fi

if [ ! -d tests/browser/node_modules/ws ] || [ ! -d tests/browser/node_modules/playwright-core ]; then
  echo "== installing Node peers in tests/browser"
  (cd tests/browser && npm ci --no-audit --no-fund --silent)
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --features negotiate,openssl --quiet -- -D warnings
echo "== fuzz targets, briefly"
scripts/fuzz.sh

echo "== the Windows programs (burrow-local.exe, burrow-server.exe) for the Wine tests"
# Installs mingw-w64, nasm and Wine, fetches Debian's rust-src for -Zbuild-std (cached in
# ~/.cache/burrow-windows) and builds them; tests/windows.rs runs them under Wine and
# fails (never skips) without them.
# Without aws-lc-rs (its C build for Windows is most of this build's time): ring is what the
# Wine tests exercise; the shipped build (scripts/windows.sh --release) has both.
scripts/windows.sh --no-default-features >/dev/null
eval "$(scripts/windows.sh env)"

echo "== cargo test"
# Negotiate (Kerberos) is built in for the tests: its test drives a real KDC and squid;
# OpenSSL too, so that every AEAD implementation is tested against the reference.
cargo test --workspace --all-targets --features negotiate,openssl "$@"
