#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# bench.sh - loopback TCP, TCP with the bypass, and Unix domain sockets,
# side by side, in one run.
#
# The three transports go through the same harness, bench/sockbench (same
# send/recv loops, every byte checked): stream throughput per write size,
# ping-pong latency, connection setup rate, and CPU time per GB.  iperf3 and
# sockperf then measure the two TCP cases with tools everybody knows.
#
# Everything runs in a network namespace of its own, in two cgroups of our
# own: "tcp" (nothing attached) and "bypass" (load.sh attaches the bypass
# there, with its own pin directory).  Each bypass run is checked against the
# bypass's per-CPU counters: the bytes redirected, plus those passed to TCP
# while a lagging reader had the connection on TCP, must match the bytes the
# run sent, or the benchmark stops.  The transports take turns within each
# repetition, so background load hits all of them alike; each figure is the
# median of the repetitions, with min-max beside it.
#
# Then bench/scale.sh: many connections held open, and churn.
#
# Output: bench/out/results.md (tables), bench/out/throughput.png (plot),
# bench/out/raw.jsonl (every run).  --save also copies the first two to
# bench/results.md and bench/throughput.png, the committed copies.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"

readonly BENCH_DIR=$TOP_DIR/bench
readonly OUT=$BENCH_DIR/out
readonly RAW=$OUT/raw.jsonl
readonly SOCKBENCH=$TOP_DIR/bench/sockbench
readonly REPORT_JQ=$BENCH_DIR/report.jq
readonly PLOT_GP=$BENCH_DIR/plot.gp
readonly SIZES="64 256 1024 4096 16384 65536"
readonly PP_SIZES="64 1024"
readonly TRANSPORTS="tcp bypass unix"
# Stream runs also measure TCP with TCP_NODELAY: TCP without Nagle's
# coalescing, as the bypass is (it delivers every write at once).
readonly STREAM_TRANSPORTS="$TRANSPORTS tcp-nodelay"
# Our own port range (see tests/bench.bats); in our own netns anyway.
readonly PORT_FIRST=35000 PORT_LAST=39999

usage() {
	cat >&2 <<EOF
Usage: ${0##*/} [--quick] [--save]

Benchmark loopback TCP, TCP with the sockops bypass, and Unix sockets.

  --quick   short runs, fewer sizes for iperf3/sockperf (under a minute; CI)
  --save    copy the results to bench/results.md and bench/throughput.png
  -h        this text

Environment: REPS (repetitions), SECS (seconds per sockbench run).
EOF
}

quick=0
save=0
while (($#)); do
	case $1 in
	--quick)	quick=1 ;;
	--save)		save=1 ;;
	-h|--help)	usage; exit 0 ;;
	*)		echo "${0##*/}: unknown option: $1" >&2; usage; exit 2 ;;
	esac
	shift
done

if ((quick)); then
	reps=${REPS:-3} secs=${SECS:-0.25} tool_secs=1 tool_reps=1
	iperf_sizes="1024 65536" sockperf_sizes="64"
else
	reps=${REPS:-5} secs=${SECS:-1} tool_secs=2 tool_reps=3
	iperf_sizes=$SIZES sockperf_sizes=$PP_SIZES
fi

need_root "$@"
need_tools bpftool jq ip ss iperf3 sockperf gnuplot findmnt
[[ -x $SOCKBENCH ]] || die "$SOCKBENCH not found: build it first with 'make'"

cgroot=$(cgroup2_root)
bpffs=$(bpffs_dir)
readonly NS=sockbench-$$
readonly CG_TCP=$cgroot/sockbench-$$-tcp
readonly CG_BYPASS=$cgroot/sockbench-$$-bypass
readonly PIN=$bpffs/sockbench-$$
BG_PIDS=()

cleanup() {
	local pid cg

	for pid in "${BG_PIDS[@]}"; do
		kill "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
	"$TOP_DIR/unload.sh" --pin-dir "$PIN" >/dev/null 2>&1 || true
	# Whatever is still in our cgroups was started by us.
	for cg in "$CG_TCP" "$CG_BYPASS"; do
		cgroup_remove "$cg" || true
	done
	ip netns del "$NS" 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# in_cg CGROUP CMD...: run CMD in CGROUP and in our netns.  ip netns exec
# execs CMD in place, so a PID taken with $! is CMD's own.
in_cg() {
	local cg=$1

	shift
	(echo "$BASHPID" > "$cg/cgroup.procs" && exec ip netns exec "$NS" "$@")
}

cgroup_of() {
	[[ $1 == bypass ]] && echo "$CG_BYPASS" || echo "$CG_TCP"
}

port=$PORT_FIRST
next_port() {
	port=$((port < PORT_LAST ? port + 1 : PORT_FIRST))
}

wait_port() {
	netns_wait_port "$NS" "$1"
}

# stats: "bytes_redirected bytes_passed", summed over CPUs.
stats() {
	bpftool -j map dump pinned "$PIN/$PIN_STATS" | jq -r '
		[.[0].formatted.values[].value] |
		"\(map(.bytes_redirected) | add) \(map(.bytes_passed) | add)"'
}

# The counters after the last bypass run: TCP and Unix runs in between
# must leave them as they are.
counters=
last_bypass="loading the bypass"

# begin_run LABEL WHAT: before a bypass run, check that the runs since the
# last one did not touch the counters.
begin_run() {
	local now

	[[ $1 == bypass ]] || return 0
	now=$(stats)
	[[ $now == "$counters" ]] ||
		die "the bypass counters moved between '$last_bypass' and '$2' ($counters -> $now): a TCP or Unix run was not plain"
}

# end_run LABEL TOOL WHAT JSON LOW HIGH SLACK: record the run in $RAW; for a
# bypass run, prove that the bypass carried it.
#
# The counter deltas around a bypass run must show its bytes redirected:
# within [EXPECTED * LOW, EXPECTED * HIGH + SLACK] (LOW and HIGH per mille),
# and no byte passed to TCP.  JSON is one line ending in "}" with a
# "bytes" field: the payload the run sent, both ways.
end_run() {
	local label=$1 tool=$2 what=$3 json=$4 lo=$5 hi=$6 slack=$7
	local r0 p0 r1 p1 red=0 pass=0 sent total

	[[ $json =~ \"bytes\":([0-9]+) ]] || die "$what: no byte count in: $json"
	sent=${BASH_REMATCH[1]}
	if [[ $label == bypass ]]; then
		read -r r0 p0 <<<"$counters"
		counters=$(stats)
		last_bypass=$what
		read -r r1 p1 <<<"$counters"
		red=$((r1 - r0))
		pass=$((p1 - p0))
	fi
	echo "${json%\}},\"label\":\"$label\",\"tool\":\"$tool\",\"rep\":$rep,\"redirected\":$red,\"passed\":$pass}" >> "$RAW"
	[[ $label == bypass ]] || return 0
	# A reader that falls --max-queue behind sends its connection on by TCP
	# (docs/how-it-works.md, "Memory"): those bytes are passed, and the
	# report shows them.
	((total = red + pass, total * 1000 >= sent * lo && total * 1000 <= sent * hi + slack * 1000)) ||
		die "$what: the bypass did not count this run: $sent bytes sent, $red redirected, $pass passed to TCP"
	((pass == 0)) ||
		warn "$what: $pass of $sent bytes went by TCP: its reader fell more than --max-queue behind"
}

# sockbench LABEL TEST SIZE: one run of the harness.
sockbench() {
	local label=$1 test=$2 size=$3 what json
	local args=("$test" -p "$port" -t "$secs")

	next_port
	[[ $test != connect ]] && args+=(-s "$size")
	[[ $label == unix ]] && args+=(-u)
	[[ $label == tcp-nodelay ]] && args+=(-N)
	what="sockbench $test${size:+ ${size}B} $label (rep $rep)"
	begin_run "$label" "$what"
	json=$(in_cg "$(cgroup_of "$label")" "$SOCKBENCH" "${args[@]}") ||
		die "$what failed"
	# Exact, but for the odd per-CPU increment lost to preemption.
	end_run "$label" sockbench "$what" "$json" 999 1001 0
}

# iperf3 LABEL SIZE: a one-shot server and a client, both in the cgroup.
iperf3_run() {
	local label=$1 size=$2 cg what json srv

	next_port
	cg=$(cgroup_of "$label")
	what="iperf3 ${size}B $label (rep $rep)"
	begin_run "$label" "$what"
	in_cg "$cg" iperf3 -s -1 -p "$port" >/dev/null 2>&1 &
	srv=$!
	BG_PIDS+=("$srv")
	wait_port "$port"
	json=$(in_cg "$cg" iperf3 -c 127.0.0.1 -p "$port" -l "$size" -t "$tool_secs" -J) ||
		die "$what failed: $(jq -r '.error // empty' <<<"$json" 2>/dev/null)"
	wait "$srv" || true
	json=$(jq -c --argjson size "$size" '{
		test: "stream", size: $size,
		bytes: .end.sum_sent.bytes,
		MBps: (.end.sum_received.bits_per_second / 8e6)}' <<<"$json")
	# The control connection is redirected too: a few KiB of JSON.
	end_run "$label" iperf3 "$what" "$json" 990 1010 1048576
}

# sockperf LABEL SIZE: ping-pong; --full-rtt reports round trips, as
# sockbench does (sockperf's default is half of it).
sockperf_run() {
	local label=$1 size=$2 cg what out json srv

	next_port
	cg=$(cgroup_of "$label")
	what="sockperf ${size}B $label (rep $rep)"
	begin_run "$label" "$what"
	in_cg "$cg" sockperf sr --tcp -i 127.0.0.1 -p "$port" >/dev/null 2>&1 &
	srv=$!
	BG_PIDS+=("$srv")
	wait_port "$port"
	out=$(in_cg "$cg" sockperf pp --tcp -i 127.0.0.1 -p "$port" -m "$size" \
		-t "$tool_secs" --full-rtt 2>&1) || die "$what failed: $out"
	kill "$srv"
	wait "$srv" 2>/dev/null || true
	# "[Total Run] RunTime=...; SentMessages=N; ReceivedMessages=M" and
	# "---> percentile 50.000 =   17.352": the echo doubles the bytes.
	json=$(awk -v size="$size" '
		/\[Total Run\]/ {
			for (i = 1; i <= NF; i++) {
				if ($i ~ /^SentMessages=/) { sub(/.*=/, "", $i); s = $i + 0 }
				if ($i ~ /^ReceivedMessages=/) { sub(/.*=/, "", $i); r = $i + 0 }
			}
		}
		/percentile 50.000/ { p50 = $NF }
		/percentile 99.000/ { p99 = $NF }
		END {
			if (p50 == "" || s == 0) exit 1
			printf "{\"test\":\"pingpong\",\"size\":%d,\"bytes\":%d,\"p50_us\":%s,\"p99_us\":%s}\n",
				size, (s + r) * size, p50, p99
		}' <<<"$out") || die "$what: cannot parse sockperf's output: $out"
	# Its warm-up messages are not in SentMessages.
	end_run "$label" sockperf "$what" "$json" 990 1100 1048576
}

# rotated N [TRANSPORTS]: the transports, rotated by N, so none always
# goes first.
rotated() {
	local t=(${2:-$TRANSPORTS}) n i

	n=${#t[@]}
	for ((i = 0; i < n; i++)); do
		echo "${t[(i + $1) % n]}"
	done
}

machine() {
	local cpu

	cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
	jq -n --arg nproc "$(nproc)" --arg cpu "${cpu:-unknown}" \
		--arg kernel "$(uname -r)" \
		--arg os "$(. /etc/os-release && echo "$PRETTY_NAME")" \
		--arg date "$(date -u '+%Y-%m-%d %H:%M UTC')" \
		--arg load "$load_start" \
		--arg load_end "$(cut -d' ' -f1-3 /proc/loadavg)" \
		--arg iperf3 "$(iperf3 --version | head -n 1)" \
		--arg sockperf "$(sockperf --version 2>&1 | sed -n 's/.*version \([^ ,]*\).*/\1/p' | head -n 1)" \
		--argjson quick "$quick" --argjson reps "$reps" --arg secs "$secs" \
		--argjson tool_reps "$tool_reps" --argjson tool_secs "$tool_secs" \
		'$ARGS.named'
}

mkdir -p "$OUT"
: > "$RAW"
mkdir "$CG_TCP" "$CG_BYPASS"
ip netns add "$NS"
ip -n "$NS" link set lo up
# Keep the clients' ephemeral ports out of our listening range, or a
# listener could find its port taken by the client end of an earlier run.
ip netns exec "$NS" sysctl -qw net.ipv4.ip_local_port_range="40000 60999"
"$TOP_DIR/load.sh" --cgroup "$CG_BYPASS" --pin-dir "$PIN" --quiet >/dev/null
counters=$(stats)
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
info "$( ((quick)) && echo quick || echo full) run: $reps repetitions of ${secs}s per sockbench figure; results in ${OUT#$TOP_DIR/}/"

for ((rep = 1; rep <= reps; rep++)); do
	info "repetition $rep/$reps: sockbench"
	for size in $SIZES; do
		for t in $(rotated $((rep + size)) "$STREAM_TRANSPORTS"); do
			sockbench "$t" stream "$size"
		done
	done
	for size in $PP_SIZES; do
		for t in $(rotated "$rep"); do
			sockbench "$t" pingpong "$size"
		done
	done
	for t in $(rotated "$rep"); do
		sockbench "$t" connect ""
	done
done

for ((rep = 1; rep <= tool_reps; rep++)); do
	info "repetition $rep/$tool_reps: iperf3, sockperf"
	for size in $iperf_sizes; do
		for t in $(rotated "$rep" | grep -v unix); do
			iperf3_run "$t" "$size"
		done
	done
	for size in $sockperf_sizes; do
		for t in $(rotated "$rep" | grep -v unix); do
			sockperf_run "$t" "$size"
		done
	done
done

begin_run bypass "the end of the benchmark"
machine > "$OUT/machine.json"

jq -rs --slurpfile m "$OUT/machine.json" -f "$REPORT_JQ" --arg out markdown \
	"$RAW" > "$OUT/results.md"
# The scale section: held connections and churn (bench/scale.sh, with its
# own namespace, cgroups and pins), appended to the report.
info "scale: held connections and churn (bench/scale.sh)"
"$BENCH_DIR/scale.sh" $( ((quick)) && echo --quick) >/dev/null
{ echo; cat "$OUT/scale.md"; } >>"$OUT/results.md"
jq -rs --slurpfile m "$OUT/machine.json" -f "$REPORT_JQ" --arg out plotdata \
	"$RAW" > "$OUT/throughput.dat"
gnuplot -c "$PLOT_GP" "$OUT/throughput.dat" "$OUT/throughput.png"

if ((save)); then
	cp "$OUT/results.md" "$BENCH_DIR/results.md"
	cp "$OUT/throughput.png" "$BENCH_DIR/throughput.png"
	info "saved bench/results.md and bench/throughput.png"
fi
cat "$OUT/results.md"
info "every bypass run was redirected (counters checked); results: ${OUT#$TOP_DIR/}/results.md, ${OUT#$TOP_DIR/}/throughput.png"
