#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# containers.sh - container to container over a bridge: plain TCP against
# the bypass (load.sh --cross-netns), taking turns, in one run.
#
#   bench/containers.sh [-r REPS] [-t SECS] [-o FILE]
#
# Docker's topology, built by hand: two namespaces (the containers), each on
# a veth pair whose other end is on a Linux bridge in a third namespace,
# 198.51.100.1 and .2.  Tests: iperf3 streams with 64 KiB and 1 KiB writes
# (MB/s) and sockperf ping-pong of 64 bytes (p50 round trip, us).  Each
# variant runs in a cgroup of its own (the bypass is attached to one of
# them); within each repetition every test runs once per variant, in an
# order that rotates, so background load hits both alike.  Then the race
# with the accept: CONNS short connections across the bridge with the
# bypass, and how many of them found no peer at their first send
# (fallback_no_peer) and came back (return_no_peer).
#
# Output: the table on stdout (and in FILE with -o), every run in
# bench/out/containers.jsonl.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"

readonly XFER=$TOP_DIR/tests/probes/xfer
readonly OUT=$TOP_DIR/bench/out
readonly RAW=$OUT/containers.jsonl
readonly PORT_FIRST=35000 PORT_LAST=39999
readonly SERVER=198.51.100.2
readonly CONNS=400

usage() {
	sed -n 's/^# \{0,1\}//; 3,21p' "$0" >&2
}

reps=5 secs=3 outfile=
while getopts r:t:o:h opt; do
	case $opt in
	r) reps=$OPTARG ;;
	t) secs=$OPTARG ;;
	o) outfile=$OPTARG ;;
	*) usage; exit 2 ;;
	esac
done

need_root "$@"
need_tools bpftool jq ip ss iperf3 sockperf findmnt
[[ -x $XFER ]] || die "$XFER not found: build it first with 'make'"

cgroot=$(cgroup2_root)
bpffs=$(bpffs_dir)
readonly BASE=sockctr-$$
readonly BR=$BASE-br C1=$BASE-c1 C2=$BASE-c2 PIN=$bpffs/$BASE
readonly VARIANTS=(tcp bypass)
BG_PIDS=()

cleanup() {
	local pid v ns

	for pid in "${BG_PIDS[@]}"; do
		kill "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
	"$TOP_DIR/unload.sh" --pin-dir "$PIN" >/dev/null 2>&1 || true
	for v in "${VARIANTS[@]}"; do
		cgroup_remove "$cgroot/$BASE-$v" || true
	done
	for ns in "$C1" "$C2" "$BR"; do
		ip netns del "$ns" 2>/dev/null || true
	done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# in_ns VARIANT NS CMD...: CMD in VARIANT's cgroup and namespace NS.
in_ns() {
	local cg=$cgroot/$BASE-$1 ns=$2

	shift 2
	(echo "$BASHPID" >"$cg/cgroup.procs" && exec ip netns exec "$ns" "$@")
}

port=$PORT_FIRST
next_port() {
	port=$((port < PORT_LAST ? port + 1 : PORT_FIRST))
}

wait_port() {
	netns_wait_port "$C2" "$1"
}

# counters: "bytes_redirected bytes_passed fallbacks" of the bypass, the
# last one the connection directions that fell back to TCP, for any reason.
counters() {
	bpftool -j map dump pinned "$PIN/$PIN_STATS" | jq -r '[.[0].formatted.values[].value] |
		"\(map(.bytes_redirected) | add) \(map(.bytes_passed) | add) " +
		"\(map(to_entries[] | select(.key | startswith("fallback_")) | .value) | add)"'
}

# run_test VARIANT TEST: one run on $port; prints its figure as JSON
# ({value}).  Run in a command substitution: the caller picks the port.
run_test() {
	local v=$1 kind=${2%%:*} size=${2#*:} json out srv

	case $kind in
	stream)
		in_ns "$v" "$C2" iperf3 -s -1 -B "$SERVER" -p "$port" >/dev/null 2>&1 &
		srv=$!
		BG_PIDS+=("$srv")
		wait_port "$port"
		json=$(in_ns "$v" "$C1" iperf3 -c "$SERVER" -p "$port" -l "$size" -t "$secs" -J)
		wait "$srv" || true
		jq -c '{value: (.end.sum_received.bits_per_second / 8e6)}' <<<"$json" ;;
	pingpong)
		in_ns "$v" "$C2" sockperf sr --tcp -i "$SERVER" -p "$port" >/dev/null 2>&1 &
		srv=$!
		BG_PIDS+=("$srv")
		wait_port "$port"
		# --full-rtt: round trips, as bench.sh reports them.
		out=$(in_ns "$v" "$C1" sockperf pp --tcp -i "$SERVER" -p "$port" -m "$size" \
			-t "$secs" --full-rtt 2>&1) || die "sockperf failed: $out"
		kill "$srv"
		wait "$srv" 2>/dev/null || true
		awk '/percentile 50.000/ { p = $NF } END { if (p == "") exit 1; print "{\"value\":" p "}" }' \
			<<<"$out" || die "cannot parse sockperf's output: $out" ;;
	esac
}

# The topology: the bridge's namespace, and two containers on it.
ip netns add "$BR"
ip -n "$BR" link add br0 type bridge
ip -n "$BR" link set br0 up
n=0
for ns in "$C1" "$C2"; do
	n=$((n + 1))
	ip netns add "$ns"
	ip -n "$ns" link set lo up
	ip -n "$ns" link add eth0 type veth peer name "v$n" netns "$BR"
	ip -n "$BR" link set "v$n" master br0 up
	ip -n "$ns" addr add "198.51.100.$n/24" dev eth0
	ip -n "$ns" link set eth0 up
	ip netns exec "$ns" sysctl -qw net.ipv4.ip_local_port_range="40000 60999"
done
for v in "${VARIANTS[@]}"; do
	mkdir "$cgroot/$BASE-$v"
done
"$TOP_DIR/load.sh" --cgroup "$cgroot/$BASE-bypass" --pin-dir "$PIN" --quiet --cross-netns >/dev/null

mkdir -p "$OUT"
: >"$RAW"
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
tests=(stream:65536 stream:1024 pingpong:64)
for ((rep = 1; rep <= reps; rep++)); do
	info "repetition $rep/$reps"
	for t in "${tests[@]}"; do
		for ((k = 0; k < 2; k++)); do
			v=${VARIANTS[(k + rep) % 2]}
			read -r r0 p0 f0 < <(counters)
			next_port
			fig=$(run_test "$v" "$t") || die "$v: $t failed"
			read -r r1 p1 f1 < <(counters)
			jq -c --arg test "$t" --arg variant "$v" --argjson rep "$rep" \
				--argjson redirected $((r1 - r0)) --argjson passed $((p1 - p0)) \
				--argjson fallbacks $((f1 - f0)) \
				'. + $ARGS.named' <<<"$fig" >>"$RAW"
		done
	done
done

# The race with the accept: CONNS connections, 4 at a time, 16 KB each way.
next_port
before=$(bpftool -j map dump pinned "$PIN/$PIN_STATS")
in_ns bypass "$C2" "$XFER" recv -b "$SERVER" -p "$port" -n "$CONNS" >/dev/null &
srv=$!
BG_PIDS+=("$srv")
wait_port "$port"
in_ns bypass "$C1" "$XFER" send -a "$SERVER" -p "$port" -C "$CONNS" -P 4 \
	-B 16384 -R 16384 >/dev/null || die "xfer: connections across the bridge failed"
wait "$srv" || die "xfer: a connection across the bridge was not intact"
race=$(bpftool -j map dump pinned "$PIN/$PIN_STATS" |
	jq -c --argjson before "$before" --argjson conns "$CONNS" '
	. as $now |
	def sum($m; $f): [$m[0].formatted.values[].value[$f]] | add;
	{conns: $conns} + (["sockets_inserted", "fallback_no_peer", "return_no_peer",
		"bytes_redirected", "bytes_passed", "collisions"] |
		map(. as $f | {key: $f, value: (sum($now; $f) - sum($before; $f))}) | from_entries)')
jq -c '. + {test: "race"}' <<<"$race" >>"$RAW"

jq -rs --arg machine "$(nproc) CPUs, Linux $(uname -r)" \
	--arg when "$(date -u '+%Y-%m-%d %H:%M UTC')" \
	--arg load "$load_start -> $(cut -d' ' -f1-3 /proc/loadavg)" \
	--argjson reps "$reps" --arg secs "$secs" '
	def median: sort | if length % 2 == 1 then .[length / 2 | floor]
		else (.[length / 2 - 1] + .[length / 2]) / 2 end;
	def r: . * 100 | round / 100;
	def name: {"stream:65536": "iperf3 stream, 64 KiB writes (MB/s)",
		"stream:1024": "iperf3 stream, 1 KiB writes (MB/s)",
		"pingpong:64": "sockperf ping-pong, 64 B, p50 round trip (µs)"}[.];
	"\($machine), \($when); load \($load); \($reps) x \($secs) s, container to container over a bridge.",
	"",
	"| test | TCP | bypass | bypass/TCP |",
	"|---|---:|---:|---:|",
	(map(select(.test != "race")) | group_by(.test)[] | .[0].test as $t |
		(map(select(.variant == "tcp")) | map(.value)) as $tcp |
		(map(select(.variant == "bypass"))) as $b |
		($b | map(.value)) as $byp |
		"| \($t | name) | \($tcp | median | r) (\($tcp | min | r)–\($tcp | max | r)) | " +
		"\($byp | median | r) (\($byp | min | r)–\($byp | max | r)), " +
		"\(($b | map(.redirected) | add) * 100 / ([($b | map(.redirected + .passed) | add), 1] | max) | round)% bypass, " +
		"\($b | map(.fallbacks) | add) fallbacks | " +
		"\(($byp | median) / ($tcp | median) | r)× |"),
	"",
	(map(select(.test == "race"))[] |
		"Race with the accept: \(.conns) connections (4 at a time, 16 KB each way): " +
		"\(.fallback_no_peer) found no peer at their first send, \(.return_no_peer) came back; " +
		"\(.bytes_passed) of \(.bytes_redirected + .bytes_passed) bytes by TCP; \(.collisions) collisions.")
	' "$RAW" | tee ${outfile:+"$outfile"}
