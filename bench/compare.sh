#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# compare.sh - the same tests against several builds or settings of the
# bypass, and plain TCP, taking turns, in one run: before and after a
# change, or one setting against another.
#
#   bench/compare.sh [-r REPS] [-t SECS] [-H HOGS] [-S] [-o FILE] TEST... -- VARIANT...
#
# TEST is one of:
#   stream:SIZE     sockbench stream, SIZE-byte writes (MB/s)
#   pingpong:SIZE   sockbench ping-pong, p50 round trip (us)
#   connect[:N]     sockbench connection setup, N clients at once (conn/s)
#   rpc[:N]         short connections of one 64-byte request and reply,
#                   N clients at once (connections/s)
#   ttfb            rpc, one client: p50 time to first byte (us)
#   iperf3:SIZE     iperf3 -l SIZE (MB/s)
# VARIANT is NAME=tcp (no bypass), or NAME=TREE[,ARG...]: the bypass of the
# built tree TREE ("." for this one; another is, say, a git worktree of an
# older commit), loaded by its own load.sh with ARGs, e.g.
# "q8=.,--max-queue,8M" or "before=/tmp/old".
#
# Each variant runs in a cgroup of its own, in one network namespace; within
# each repetition every test runs once per variant, in an order that
# rotates, so background load hits all alike.  With -H, HOGS processes spin
# on the CPUs meanwhile, in a cgroup of their own: a busy host.  The table
# gives the median of the repetitions with min-max, the ratio to the first
# variant, and for each bypass variant the share of bytes that went by the
# bypass (the rest fell back to TCP), from its counters.  With -S
# (kernel.bpf_stats_enabled on for the run), a second table gives, for
# the connection tests, each bypass variant's program runs and run time
# per connection.
#
# Output: the table on stdout (and in FILE with -o), every run in
# bench/out/compare.jsonl.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"

readonly SOCKBENCH=$TOP_DIR/bench/sockbench
readonly OUT=$TOP_DIR/bench/out
readonly RAW=$OUT/compare.jsonl
readonly PORT_FIRST=35000 PORT_LAST=39999

usage() {
	sed -n 's/^# \{0,1\}//; 3,25p' "$0" >&2
}

reps=5 secs=2 hogs=0 outfile= progstats=0
while getopts r:t:H:So:h opt; do
	case $opt in
	S) progstats=1 ;;
	r) reps=$OPTARG ;;
	t) secs=$OPTARG ;;
	H) hogs=$OPTARG ;;
	o) outfile=$OPTARG ;;
	*) usage; exit 2 ;;
	esac
done
shift $((OPTIND - 1))
tests=()
while (($#)) && [[ $1 != -- ]]; do
	tests+=("$1")
	shift
done
(($# > 1)) && ((${#tests[@]})) || { usage; exit 2; }
shift
variants=("$@")

need_root "$@"
need_tools bpftool jq ip ss iperf3 findmnt
[[ -x $SOCKBENCH ]] || die "$SOCKBENCH not found: build it first with 'make'"

cgroot=$(cgroup2_root)
bpffs=$(bpffs_dir)
readonly NS=sockcmp-$$ BASE=sockcmp-$$
BG_PIDS=()
trees=()		# each variant's tree, "" for plain TCP

stats_was=
cleanup() {
	local pid i

	[[ -z $stats_was ]] || sysctl -qw kernel.bpf_stats_enabled="$stats_was" || true
	for pid in "${BG_PIDS[@]}"; do
		kill "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
	for ((i = 0; i < ${#trees[@]}; i++)); do
		[[ -z ${trees[i]} ]] ||
			"${trees[i]}/unload.sh" --pin-dir "$bpffs/$BASE-$i" >/dev/null 2>&1 || true
		cgroup_remove "$cgroot/$BASE-$i" || true
	done
	cgroup_remove "$cgroot/$BASE-hogs" || true
	ip netns del "$NS" 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# in_cg I CMD...: CMD in variant I's cgroup and our netns.
in_cg() {
	local cg=$cgroot/$BASE-$1

	shift
	(echo "$BASHPID" >"$cg/cgroup.procs" && exec ip netns exec "$NS" "$@")
}

port=$PORT_FIRST
next_port() {
	port=$((port < PORT_LAST ? port + 1 : PORT_FIRST))
}

# counters I: "bytes_redirected bytes_passed" of variant I (0 0 for TCP).
counters() {
	local pin=$bpffs/$BASE-$1

	[[ -e $pin/$PIN_STATS ]] || { echo 0 0; return; }
	bpftool -j map dump pinned "$pin/$PIN_STATS" | jq -r '[.[0].formatted.values[].value] |
		"\(map(.bytes_redirected) | add) \(map(.bytes_passed) | add)"'
}

# prog_stats I: "run_cnt run_time_ns" of each of variant I's programs,
# sock_ops, sock_release and sk_msg, on one line ("" for TCP).
prog_stats() {
	local pin=$bpffs/$BASE-$1 p

	[[ -e $pin/$PIN_SOCKOPS ]] || return 0
	for p in "$PIN_SOCKOPS" "$PIN_RELEASE" "$PIN_REDIR"; do
		bpftool -j prog show pinned "$pin/$p" | jq -j '"\(.run_cnt // 0) \(.run_time_ns // 0) "'
	done
	echo
}

# The connection tests' figures beside the value: connections made, and
# the CPU time of both ends per connection, in microseconds.
readonly CONN_FIGS='{conns, cpu_us: ((.cpu_client_s + .cpu_server_s) / .conns * 1e6)}'

# run_test I TEST: one run; prints its figure ("value") and, for the
# connection tests, the connections made ("conns"), as JSON.
run_test() {
	local i=$1 kind=${2%%:*} size=${2#*:} json srv

	[[ $2 == *:* ]] || size=
	next_port
	case $kind in
	stream|pingpong)
		json=$(in_cg "$i" "$SOCKBENCH" "$kind" -p "$port" -s "$size" -t "$secs")
		jq -c '{value: (if .test == "stream" then .MBps else .p50_us end)}' <<<"$json" ;;
	connect|rpc)
		json=$(in_cg "$i" "$SOCKBENCH" "$kind" -P "${size:-1}" -p "$port" -t "$secs")
		jq -c "$CONN_FIGS"' + {value: .conns_per_s}' <<<"$json" ;;
	ttfb)
		json=$(in_cg "$i" "$SOCKBENCH" rpc -p "$port" -t "$secs")
		jq -c "$CONN_FIGS"' + {value: .ttfb_p50_us}' <<<"$json" ;;
	iperf3)
		in_cg "$i" iperf3 -s -1 -p "$port" >/dev/null 2>&1 &
		srv=$!
		BG_PIDS+=("$srv")
		for _ in $(seq 100); do
			[[ -n $(ip netns exec "$NS" ss -Htln "sport = :$port") ]] && break
			sleep 0.05
		done
		# iperf3 takes whole seconds (-t 0: for ever).
		json=$(in_cg "$i" iperf3 -c 127.0.0.1 -p "$port" -l "$size" \
			-t "$(awk -v s="$secs" 'BEGIN { print (s < 1 ? 1 : int(s)) }')" -J)
		wait "$srv" || true
		jq -c '{value: (.end.sum_received.bits_per_second / 8e6)}' <<<"$json" ;;
	*)
		die "unknown test: $2" ;;
	esac
}

mkdir -p "$OUT"
: >"$RAW"
ip netns add "$NS"
ip -n "$NS" link set lo up
ip netns exec "$NS" sysctl -qw net.ipv4.ip_local_port_range="40000 60999"
names=()
for ((i = 0; i < ${#variants[@]}; i++)); do
	v=${variants[i]}
	[[ $v == *=* ]] || die "variant '$v': give NAME=tcp or NAME=DIR[,ARG...]"
	names+=("${v%%=*}")
	mkdir "$cgroot/$BASE-$i"
	spec=${v#*=}
	trees+=("")
	[[ $spec == tcp ]] && continue
	IFS=, read -ra args <<<"$spec"
	trees[i]=$(realpath "${args[0]}")
	"${trees[i]}/load.sh" --cgroup "$cgroot/$BASE-$i" \
		--pin-dir "$bpffs/$BASE-$i" --quiet "${args[@]:1}" >/dev/null
done
if ((hogs)); then
	mkdir "$cgroot/$BASE-hogs"
	for ((h = 0; h < hogs; h++)); do
		(echo "$BASHPID" >"$cgroot/$BASE-hogs/cgroup.procs" &&
			exec bash -c 'while :; do :; done') &
		BG_PIDS+=($!)
	done
fi
if ((progstats)); then
	stats_was=$(sysctl -n kernel.bpf_stats_enabled)
	sysctl -qw kernel.bpf_stats_enabled=1
fi
load_start=$(cut -d' ' -f1-3 /proc/loadavg)

n=${#variants[@]}
for ((rep = 1; rep <= reps; rep++)); do
	info "repetition $rep/$reps"
	for t in "${tests[@]}"; do
		for ((k = 0; k < n; k++)); do
			i=$(((k + rep) % n))
			read -r r0 p0 < <(counters "$i")
			s0=$(prog_stats "$i")
			fig=$(run_test "$i" "$t") || die "${names[i]}: $t failed"
			s1=$(prog_stats "$i")
			read -r r1 p1 < <(counters "$i")
			# The programs' runs and time in this run: sock_ops,
			# sock_release, sk_msg, [runs, ns] each.
			progs=$(jq -nc --arg a "$s0" --arg b "$s1" '
				[$a, $b] | map(split(" ") | map(select(. != "") | tonumber)) |
				if .[0] | length == 6 then [range(0; 6; 2) as $k |
					[.[1][$k] - .[0][$k], .[1][$k + 1] - .[0][$k + 1]]]
				else null end')
			jq -c --arg test "$t" --arg variant "${names[i]}" --argjson rep "$rep" \
				--argjson redirected $((r1 - r0)) --argjson passed $((p1 - p0)) \
				--argjson progs "$progs" \
				'. + $ARGS.named' <<<"$fig" >>"$RAW"
		done
	done
done

jq -rs --arg names "${names[*]}" --arg machine "$(nproc) CPUs, Linux $(uname -r)" \
	--arg when "$(date -u '+%Y-%m-%d %H:%M UTC')" --arg load "$load_start -> $(cut -d' ' -f1-3 /proc/loadavg)" \
	--argjson reps "$reps" --arg secs "$secs" --argjson hogs "$hogs" '
	def median: sort | if length % 2 == 1 then .[length / 2 | floor]
		else (.[length / 2 - 1] + .[length / 2]) / 2 end;
	def r: . * 100 | round / 100;
	($names | split(" ")) as $v |
	"\($machine), \($when); load \($load); \($reps) x \($secs) s\(if $hogs > 0 then ", \($hogs) CPU hogs beside" else "" end).",
	"",
	"| test | " + ($v | join(" | ")) + " | " + ($v[1:] | map("\(.)/\($v[0])") | join(" | ")) + " |",
	"|---|" + ($v | map("---:") | join("|")) + "|" + ($v[1:] | map("---:") | join("|")) + "|",
	(group_by(.test)[] | . as $runs | .[0].test as $t |
		[$v[] as $name | $runs | map(select(.variant == $name))] as $by |
		[$by[] | map(.value) | median] as $med |
		"| \($t) | " +
		([range(0; $v | length) as $k | $by[$k] |
			"\($med[$k] | r) (\(map(.value) | min | r)–\(map(.value) | max | r))" +
			(if (map(.redirected + .passed) | add) > 0 then
				", \((map(.redirected) | add) * 100 / (map(.redirected + .passed) | add) | round)% bypass"
			else "" end)] | join(" | ")) + " | " +
		([range(1; $v | length) as $k | "\($med[$k] / $med[0] | r)×"] | join(" | ")) + " |"),
	# Per connection, the medians over the repetitions: the CPU time of
	# both ends, and with -S the runs and run time of each program.
	([.[] | select((.conns // 0) > 0)] |
	if length == 0 then empty else
		"",
		"Per connection (medians): user+system CPU time of both ends" +
		(if any(.progs != null) then "; program runs and run time (kernel.bpf_stats_enabled)" else "" end) + ".",
		"",
		"| test | variant | CPU us | sock_ops runs | sock_ops ns | sock_release runs | sock_release ns | sk_msg runs | sk_msg ns |",
		"|---|---|---:|---:|---:|---:|---:|---:|---:|",
		(group_by(.test)[] | group_by(.variant)[] | .[0] as $f |
			"| \($f.test) | \($f.variant) | \(map(.cpu_us) | median | r) | " +
			(if $f.progs == null or $f.progs[0][0] == 0 then " | | | | | "
			else [range(0; 3) as $p | (map(.progs[$p][0] / .conns) | median | r),
				(map(.progs[$p][1] / .conns) | median | round)] |
				map(tostring) | join(" | ") end) + " |")
	end)
	' "$RAW" | tee ${outfile:+"$outfile"}
