#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# demo.sh - the seed's flow, end to end, with the evidence side by side:
# an iperf3 server, a client over plain loopback TCP, then the same client
# with the bypass loaded.  Shows both throughputs, the trace lines, the
# packets on lo, and the counters; then unloads and stops what it started.
#
# The bypass is attached to a cgroup of the demo's own, holding only the
# iperf3 processes, so nothing else on the host is touched.  ("sudo
# ./load.sh" with no options attaches to the root cgroup: every process.)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"

readonly PORT=${DEMO_PORT:-5001}
readonly SECS=${DEMO_SECS:-5}

need_root
need_tools iperf3 tcpdump bpftool jq findmnt ss
for obj in bpf_sockops.o bpf_redir.o bpf_sockopt.o; do
	[[ -f $TOP_DIR/$obj ]] || die "$obj not built: run 'make' first"
done
[[ -z $(ss -Htln "sport = :$PORT") ]] ||
	die "port $PORT is in use; pick another with DEMO_PORT=n"

readonly CG=$(cgroup2_root)/sockops-demo-$$
readonly PIN=$(bpffs_dir)/sockops-demo-$$
readonly TMP=$(mktemp -d)
pids=()

cleanup() {
	local pid

	for pid in "${pids[@]}"; do
		kill "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
	"$TOP_DIR/unload.sh" --pin-dir "$PIN" >/dev/null 2>&1 || true
	rmdir "$CG" 2>/dev/null || true
	rm -rf "$TMP"
}
trap cleanup EXIT

# in_cg CMD...: run CMD inside the demo cgroup.
in_cg() {
	(echo "$BASHPID" >"$CG/cgroup.procs" && exec "$@")
}

# bg [--cg] CMD...: start CMD in the background, in the demo cgroup with
# --cg; cleanup stops it.  The subshell execs CMD, so $! is CMD's PID.
bg() {
	if [[ $1 == --cg ]]; then
		shift
		(echo "$BASHPID" >"$CG/cgroup.procs" && exec "$@") &
	else
		"$@" &
	fi
	pids+=($!)
}

wait_for() {
	for _ in $(seq 100); do
		eval "$1" && return 0
		sleep 0.05
	done
	die "timed out waiting for: $1"
}

# capture_start NAME / capture_stop: tcpdump on lo for our port, headers
# only (-s 96) and written raw, so that capturing costs the plain TCP run
# as little as possible.
capture_start() {
	tcpdump -i lo -nn -s 96 -U -w "$TMP/$1.pcap" "tcp port $PORT" 2>"$TMP/$1.err" &
	cap=$!
	pids+=($cap)
	wait_for "grep -q 'listening on' '$TMP/$1.err'"
}

capture_stop() {
	# Let the teardown (FIN, FIN, ACK) reach lo too.
	sleep 1
	kill "$cap"
	wait "$cap" 2>/dev/null || true
}

# run_client NAME: one iperf3 run under capture; leaves NAME.json, NAME.pcap.
run_client() {
	capture_start "$1"
	in_cg iperf3 -J -c 127.0.0.1 -p "$PORT" -t "$SECS" -l 64k >"$TMP/$1.json" ||
		die "iperf3 client failed: $(jq -r .error "$TMP/$1.json")"
	capture_stop
}

gbps() { jq '.end.sum_received.bits_per_second / 1e9 * 100 | round / 100' "$TMP/$1.json"; }
sent() { jq '.end.sum_sent.bytes' "$TMP/$1.json"; }
packets() { tcpdump -nn -r "$TMP/$1.pcap" 2>/dev/null | wc -l; }
data_packets() { tcpdump -nn -r "$TMP/$1.pcap" 2>/dev/null | grep -vc 'length 0$' || true; }

mkdir "$CG"
bg --cg iperf3 -s -p "$PORT" >"$TMP/server.out" 2>&1
wait_for '[[ -n $(ss -Htln "sport = :$PORT") ]]'

echo "== 1. Plain loopback TCP: iperf3 -c 127.0.0.1 -t $SECS -l 64k -p $PORT"
run_client plain
printf '   %s Gbit/s; %s packets on lo, %s of them carrying data\n' \
	"$(gbps plain)" "$(packets plain)" "$(data_packets plain)"

echo
echo "== 2. Load the bypass: ./load.sh --cgroup $CG --pin-dir $PIN"
"$TOP_DIR/load.sh" --cgroup "$CG" --pin-dir "$PIN" | sed 's/^/   /'

bg "$TOP_DIR/trace_bpf_output.sh" >"$TMP/trace.out"

echo
echo "== 3. With the bypass: the same client"
run_client bypass
sleep 0.5
printf '   %s Gbit/s; %s packets on lo, %s of them carrying data\n' \
	"$(gbps bypass)" "$(packets bypass)" "$(data_packets bypass)"
echo "   setup trace (trace_bpf_output.sh), one line per socket put in the map:"
# The trace buffer is global: keep only the lines of our port.
{ grep -- "--> $PORT\$\|port $PORT -->" "$TMP/trace.out" || echo "(none: is trace_pipe read elsewhere?)"; } |
	sed 's/^ *//; s/^/     /'
echo "   tcpdump on lo, port $PORT (trace_lo_traffic.sh): handshakes and teardowns only:"
tcpdump -nn -r "$TMP/bypass.pcap" 2>/dev/null | sed 's/^/     /'
echo "   counters (status.sh):"
"$TOP_DIR/status.sh" --pin-dir "$PIN" | sed -n '/counters:/,$p' | tail -n +2 | sed 's/^/   /'

status=$("$TOP_DIR/status.sh" --pin-dir "$PIN" --json)
redirected=$(jq .counters.bytes_redirected <<<"$status")
passed=$(jq .counters.bytes_passed <<<"$status")
fell=$(jq '.counters | .fallback_queue + .fallback_tcp_mem + .fallback_backlog' <<<"$status")
back=$(jq '.counters | .return_queue + .return_tcp_mem + .return_backlog' <<<"$status")
echo
echo "== Result"
printf '   %-26s %16s %16s\n' "" "plain TCP" "bypass"
printf '   %-26s %16s %16s   (%sx)\n' "throughput, Gbit/s" "$(gbps plain)" "$(gbps bypass)" \
	"$(jq -n "$(gbps bypass) / $(gbps plain) * 100 | round / 100")"
printf '   %-26s %16s %16s\n' "bytes iperf3 sent" "$(sent plain)" "$(sent bypass)"
printf '   %-26s %16s %16s\n' "bytes redirected by BPF" "-" "$redirected"
printf '   %-26s %16s %16s\n' "bytes sent by TCP" "all" "$passed"
printf '   %-26s %16s %16s\n' "packets on lo" "$(packets plain)" "$(packets bypass)"
printf '   %-26s %16s %16s\n' "  of them carrying data" "$(data_packets plain)" "$(data_packets bypass)"
echo "   (bytes redirected include iperf3's control connection)"
if ((fell)); then
	echo "   The iperf3 server fell more than its queue bound (at most $(human_size "$(jq .config.max_queue <<<"$status")")) behind its"
	echo "   client $fell time(s), and the data connection went by TCP then, whose flow"
	echo "   control holds a sender back; it came back to the bypass $back time(s), once"
	echo "   the server had read everything (docs/how-it-works.md, \"Flow control\")."
else
	echo "   The data connection never fell back to TCP: the server kept up."
fi

echo
echo "== 4. Unload: ./unload.sh --pin-dir $PIN"
"$TOP_DIR/unload.sh" --pin-dir "$PIN" | sed 's/^/   /'
echo "   (the iperf3 server and the demo cgroup are removed on exit)"
