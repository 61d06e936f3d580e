#!/usr/bin/env bash
# burrow vs shadowsocks-rust vs direct loopback, interleaved, ROUNDS rounds; prints every
# run, then medians and ratios (burrow / shadowsocks-rust).
#   METHOD=aes-256-gcm MB=1000 COUNT=5000 ROUNDS=3 scripts/bench.sh
# FEATURES=openssl measures the build with those cargo features.
# PINNED=ring (or aws-lc, openssl) adds a contender: burrow with BURROW_AEAD pinned to that
# implementation, to weigh the one chosen at start against it in the same run.
# BASE=<git revision> adds one more: burrow built from that revision (into target/base), so
# that a change is weighed against the build before it, interleaved in one run.
# Then, unless LINK=0, the first-byte figures over a simulated long link (RTT_MS, 100 by
# default) for every hop: tcp, tcp via squid, wss via squid and nginx, shadowsocks-rust.
# Then an NTLM-only proxy PROXY_RTT_MS (10) away answered by burrow-local itself, against
# cntlm in front of it.
# ONLY=udp (or a list: bulk,rr,udp,idle) runs those parts alone. UOT=1 carries burrow's UDP
# over a TCP tunnel (udp_transport = "tunnel") instead of the server's UDP port. A 2022
# METHOD uses a fixed base64 key.
# Needs shadowsocks-rust: cargo install shadowsocks-rust --locked (and squid, nginx,
# htpasswd for the long-link figures; cntlm and PyPI pyspnego for the NTLM figures)
set -euo pipefail
# The targets are on loopback: burrow-local tunnels them (its default dials them itself).
export BURROW_PRIVATE_TARGETS=tunnel
cd "$(dirname "$0")/.."
METHOD=${METHOD:-chacha20-ietf-poly1305}
MB=${MB:-1000}
COUNT=${COUNT:-5000}
ROUNDS=${ROUNDS:-3}
RR=${RR:-20000}
IDLE=${IDLE:-9000}
PW=bench-password
case $METHOD in 2022-*aes-128*) PW=AAECAwQFBgcICQoLDA0ODw== ;; 2022-*) PW=AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8= ;; esac
ONLY=${ONLY:-bulk,rr,udp,idle}
part() { [[ ",$ONLY," == *",$1,"* ]]; }
# The idle run holds IDLE tunnels: two descriptors each in every process, the bench's too.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt $((2 * IDLE + 64)) ]; then
  echo "descriptor limit $(ulimit -n) is below what IDLE=$IDLE needs ($((2 * IDLE + 64)))" >&2
  exit 1
fi

command -v ssserver >/dev/null || { echo "ssserver not found: cargo install shadowsocks-rust --locked" >&2; exit 1; }
# FEATURES=openssl builds burrow with those cargo features (into target/features-<list>).
if [ -n "${FEATURES:-}" ]; then
  export CARGO_TARGET_DIR="$PWD/target/features-${FEATURES//,/-}"
  cargo build --release --quiet --bins --features "$FEATURES"
  B=$CARGO_TARGET_DIR/release
  unset CARGO_TARGET_DIR
else
  cargo build --release --quiet --bins
  B=target/release
fi
tmp=$(mktemp -d)
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT
LOCAL_CONF=()
if [ "${UOT:-0}" = 1 ]; then
  echo 'udp_transport = "tunnel"' >"$tmp/uot.toml"
  LOCAL_CONF=(-c "$tmp/uot.toml")
fi

free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
wait_line() { # file pattern
  for _ in $(seq 600); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.05; done
  echo "timeout waiting for '$2' in $1" >&2; cat "$1" >&2; exit 1
}
addr_of() { grep -o 'listening on [0-9.:]*' "$1" | head -1 | awk '{print $3}'; }

# burrow
RUST_LOG=warn $B/burrow-server -s 127.0.0.1:0 -m "$METHOD" -k $PW --allow-private 2>"$tmp/bs.log" & bs=$!; pids+=($bs)
wait_line "$tmp/bs.log" "listening on"
RUST_LOG=warn $B/burrow-local "${LOCAL_CONF[@]}" -b 127.0.0.1:0 -s "$(addr_of "$tmp/bs.log")" -m "$METHOD" -k $PW 2>"$tmp/bl.log" & bl=$!; pids+=($bl)
wait_line "$tmp/bl.log" "listening on"
burrow_socks=$(addr_of "$tmp/bl.log")
contenders=(burrow ssrust direct)
if [ -n "${PINNED:-}" ]; then
  BURROW_AEAD=$PINNED RUST_LOG=warn $B/burrow-server -s 127.0.0.1:0 -m "$METHOD" -k $PW --allow-private 2>"$tmp/ps.log" & ps=$!; pids+=($ps)
  wait_line "$tmp/ps.log" "listening on"
  BURROW_AEAD=$PINNED RUST_LOG=warn $B/burrow-local -b 127.0.0.1:0 -s "$(addr_of "$tmp/ps.log")" -m "$METHOD" -k $PW 2>"$tmp/pl.log" & pl=$!; pids+=($pl)
  wait_line "$tmp/pl.log" "listening on"
  pinned_socks=$(addr_of "$tmp/pl.log")
  contenders+=(pinned)
fi

if [ -n "${BASE:-}" ]; then
  base_src="$tmp/base-src"
  base_rev=$(git rev-parse "$BASE")
  if [ -x target/base/release/burrow-local ] && [ "$(cat target/base/REV 2>/dev/null)" = "$base_rev" ]; then
    echo "reusing target/base ($BASE)"
  else
    git worktree add --detach --quiet "$base_src" "$BASE"
    echo "building $BASE into target/base"
    CARGO_TARGET_DIR="$PWD/target/base" cargo build --release --quiet --bins --manifest-path "$base_src/Cargo.toml"
    git worktree remove --force "$base_src"
    echo "$base_rev" >target/base/REV
  fi
  BB=target/base/release
  RUST_LOG=warn $BB/burrow-server -s 127.0.0.1:0 -m "$METHOD" -k $PW --allow-private 2>"$tmp/Bs.log" & Bs=$!; pids+=($Bs)
  wait_line "$tmp/Bs.log" "listening on"
  RUST_LOG=warn $BB/burrow-local "${LOCAL_CONF[@]}" -b 127.0.0.1:0 -s "$(addr_of "$tmp/Bs.log")" -m "$METHOD" -k $PW 2>"$tmp/Bl.log" & Bl=$!; pids+=($Bl)
  wait_line "$tmp/Bl.log" "listening on"
  base_socks=$(addr_of "$tmp/Bl.log")
  contenders+=(base)
fi

# shadowsocks-rust
sp=$(free_port); lp=$(free_port)
ssserver -U -s 127.0.0.1:$sp -m "$METHOD" -k $PW >"$tmp/ss.log" 2>&1 & ss=$!; pids+=($ss)
sslocal -U -b 127.0.0.1:$lp -s 127.0.0.1:$sp -m "$METHOD" -k $PW >"$tmp/sl.log" 2>&1 & sl=$!; pids+=($sl)
wait_line "$tmp/ss.log" "listening on"
wait_line "$tmp/sl.log" "listening on"
ss_socks=127.0.0.1:$lp

rss() { awk '/VmRSS/{print $2}' /proc/$1/status; }
cpu_model=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')
cpu_flags=$(grep -m1 '^flags' /proc/cpuinfo | tr ' ' '\n' | grep -xE 'aes|pclmulqdq|avx|avx2|avx512f|avx512bw|avx512vl|avx512ifma|vaes|vpclmulqdq|sha_ni' | tr '\n' ' ')
cpu_id=$(awk -F': ' '/^cpu family/{f=$2} /^model\t/{m=$2} END{print "family " f " model " m}' /proc/cpuinfo)
echo "cpu: $cpu_model ($cpu_id); flags: $cpu_flags"
echo "machine: $(nproc) cores, $(uname -r); method $METHOD; $MB MB per bulk run; $COUNT tunnels per connect run"
echo "at rest RSS (KB): burrow local+server $(( $(rss $bl) + $(rss $bs) )), shadowsocks-rust $(( $(rss $sl) + $(rss $ss) ))"
[ -n "${BASE:-}" ] && echo "at rest RSS (KB): base ($BASE) local+server $(( $(rss $Bl) + $(rss $Bs) ))"
[ -n "${PINNED:-}" ] && echo "at rest RSS (KB): pinned ($PINNED) local+server $(( $(rss $pl) + $(rss $ps) ))"

run() { # label socks-or-empty pid... -- mode args
  local label=$1 socks=$2; shift 2
  local extra=()
  [ -n "$socks" ] && extra+=(--socks "$socks")
  $B/burrow-bench --label "$label" "${extra[@]}" "$@"
}
out="$tmp/results"
# Who goes first changes every round: the run right after the bulk runs, or after another
# proxy's, meets a busier machine (the kernel still freeing socket memory, caches cold).
order() { # round -> the labels, rotated
  local all=("${contenders[@]}") i=$((($1 - 1) % ${#contenders[@]}))
  echo "${all[@]:$i}" "${all[@]:0:$i}"
}
one() { # who mode args...
  local who=$1; shift
  case $who in
    burrow) run burrow "$burrow_socks" --pid $bl --pid $bs "$@" ;;
    ssrust) run ssrust "$ss_socks" --pid $sl --pid $ss "$@" ;;
    direct) [ "$1" = idle ] || run direct "" "$@" ;;
    pinned) run pinned "$pinned_socks" --pid $pl --pid $ps "$@" ;;
    base) run base "$base_socks" --pid $Bl --pid $Bs "$@" ;;
  esac | tee -a "$out"
}
for r in $(seq "$ROUNDS"); do
  part bulk && for dir in down up; do
    for streams in 1 4; do
      for who in $(order "$r"); do one $who bulk --mb "$MB" --dir $dir --streams $streams; done
    done
  done
  part rr && for who in $(order "$r"); do
    one $who rr --count "$RR"
    one $who connect --count "$COUNT"
  done
  part udp && for size in 64 1200; do
    for who in $(order "$r"); do one $who udp --count "${UDP:-50000}" --size $size; done
  done
  part idle && for who in $(order "$r"); do one $who idle --count "$IDLE"; done
done
echo "after load RSS (KB): burrow local+server $(( $(rss $bl) + $(rss $bs) )), shadowsocks-rust $(( $(rss $sl) + $(rss $ss) ))"

others=()
[ -n "${PINNED:-}" ] && others+=("pinned")
[ -n "${BASE:-}" ] && others+=("base")
python3 - "$out" "${others[@]}" <<'PY'
import re, statistics, sys
others = sys.argv[2:]
rows = open(sys.argv[1]).read().splitlines()
def vals(label, pat):
    return [float(m.group(1)) for r in rows if r.startswith(label + " ") for m in [re.search(pat, r)] if m]
def med(v): return statistics.median(v) if v else float("nan")
def num(x): return f"{x:.2f}" if abs(x) < 10 else f"{x:.0f}"
def spread(v): return f"{num(min(v))}-{num(max(v))}" if v else "-"
figs = [
    ("bulk down 1 MB/s", r"bulk Down streams=1 .*: ([\d.]+) MB/s", True),
    ("bulk up 1 MB/s", r"bulk Up streams=1 .*: ([\d.]+) MB/s", True),
    ("bulk down 4 MB/s", r"bulk Down streams=4 .*: ([\d.]+) MB/s", True),
    ("bulk up 4 MB/s", r"bulk Up streams=4 .*: ([\d.]+) MB/s", True),
    ("CPU s/GB down 1", r"bulk Down streams=1 .*cpu ([\d.]+) s/GB", False),
    ("CPU s/GB up 1", r"bulk Up streams=1 .*cpu ([\d.]+) s/GB", False),
    ("rr p50 us", r"rr 1KiB .* p50 ([\d.]+) us", False),
    ("rr p99 us", r"rr 1KiB .* p99 ([\d.]+) us", False),
    ("rr p99.9 us", r"rr 1KiB .* p99.9 ([\d.]+) us", False),
    ("udp 64B datagrams/s", r"udp 64B : ([\d.]+) datagrams/s", True),
    ("udp 64B rtt p50 us", r"udp 64B .*rtt p50 ([\d.]+) us", False),
    ("udp 64B rtt p99 us", r"udp 64B .*p99 ([\d.]+) us", False),
    ("udp 1200B datagrams/s", r"udp 1200B : ([\d.]+) datagrams/s", True),
    ("udp 1200B rtt p99 us", r"udp 1200B .*p99 ([\d.]+) us", False),
    ("KB per idle tunnel", r"idle .*: ([\d.]+) KB per tunnel", False),
    ("idle tunnels failed", r"idle .*, (\d+) errors", False),
    ("tunnels/s", r"connect .*: ([\d.]+) tunnels/s", True),
    ("first byte p50 ms", r"p50 ([\d.]+) ms", False),
    ("first byte p99 ms", r"p99 ([\d.]+) ms", False),
]
extra = "".join(f" {o:>16} {'burrow/' + o:>14}" for o in others)
print(f"\n{'figure':22} {'burrow':>16} {'ss-rust':>16} {'direct':>16} {'burrow/ss-rust':>15}{extra}")
for name, pat, _ in figs:
    b, s, d = vals("burrow", pat), vals("ssrust", pat), vals("direct", pat)
    ratio = med(b) / med(s) if s and med(s) else float("nan")
    cell = lambda v: f"{med(v):.2f} [{spread(v)}]" if v else "-"
    line = f"{name:22} {cell(b):>16} {cell(s):>16} {cell(d):>16} {ratio:>15.2f}"
    for o in others:
        p = vals(o, pat)
        line += f" {cell(p):>16} {(med(b) / med(p) if p and med(p) else float('nan')):>14.2f}"
    print(line)
PY

if [ "${LINK:-1}" != 0 ]; then
  echo
  echo "first byte over a long link (RTT ${RTT_MS:-100} ms; cold = the first tunnel right after start)"
  # The link's listener takes SYN data (TCP Fast Open) as a VPS set up per the README
  # does; the system's setting is put back after.
  tfo=$(sysctl -n net.ipv4.tcp_fastopen 2>/dev/null || echo)
  [ -n "$tfo" ] && sysctl -qw net.ipv4.tcp_fastopen=3 2>/dev/null || true
  $B/burrow-bench first-byte-suite --count "${LINK_COUNT:-10}" --rtt-ms "${RTT_MS:-100}"
  [ -n "$tfo" ] && sysctl -qw net.ipv4.tcp_fastopen="$tfo" 2>/dev/null || true
  echo
  echo "an NTLM-only proxy ${PROXY_RTT_MS:-10} ms away: burrow-local answering it, against cntlm in front"
  $B/burrow-bench ntlm-anchor --count "${LINK_COUNT:-10}" --rtt-ms "${RTT_MS:-100}" --proxy-rtt-ms "${PROXY_RTT_MS:-10}"
fi
