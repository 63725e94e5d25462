#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# redir_cost.sh REF - nanoseconds per run of bpf_redir, this tree against
# the commit REF (e.g. main), with kernel.bpf_stats_enabled.
#
# Three instances, each loaded in a cgroup and pin directory of its own:
#   before     REF's objects, loaded by REF's load.sh
#   closed     this tree's, no socket has set an option: the gate is shut
#   open       this tree's, with one socket holding SO_RCVLOWAT (sockprobe
#              opt_hold) in its cgroup: the gate is open, and every send
#              looks its peer up in opt_socks
# Each repetition runs sockbench stream for SECS seconds at 64-byte and
# 64 KiB writes in each instance in turn, and prints the program's
# run_time_ns / run_cnt over that run.  Everything is undone at exit.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"

readonly SOCKBENCH=$TOP_DIR/bench/sockbench
readonly PROBE=$TOP_DIR/tests/probes/sockprobe
readonly REPS=${REPS:-5} SECS=${SECS:-1}
readonly SIZES=(64 65536)

[[ $# -eq 1 ]] || { echo "usage: ${0##*/} REF" >&2; exit 2; }
need_root
need_tools bpftool jq git clang

ref=$1
tmp=$(mktemp -d /tmp/redir-cost.XXXXXX)
cgroot=$(cgroup2_root)
bpffs=$(bpffs_dir)
stats_was=$(sysctl -n kernel.bpf_stats_enabled)
hold_pid=
declare -A cg pin

cleanup() {
	local v

	[[ -z $hold_pid ]] || { kill "$hold_pid" 2>/dev/null; wait "$hold_pid" 2>/dev/null || true; }
	for v in "${!pin[@]}"; do
		if [[ $v == before ]]; then
			"$tmp/ref/unload.sh" --pin-dir "${pin[$v]}" >/dev/null 2>&1 || true
		else
			"$TOP_DIR/unload.sh" --pin-dir "${pin[$v]}" >/dev/null 2>&1 || true
		fi
	done
	for v in "${!cg[@]}"; do
		cgroup_remove "${cg[$v]}" || true
	done
	sysctl -qw kernel.bpf_stats_enabled="$stats_was"
	rm -rf "$tmp"
}
trap cleanup EXIT

# REF's tree, with its objects built there.
mkdir "$tmp/ref"
git -C "$TOP_DIR" archive "$ref" | tar -x -C "$tmp/ref"
make -s -C "$tmp/ref" bpf

for v in before closed open; do
	cg[$v]=$cgroot/redir-cost-$$-$v
	pin[$v]=$bpffs/redir-cost-$$-$v
	mkdir "${cg[$v]}"
done
"$tmp/ref/load.sh" --quiet --cgroup "${cg[before]}" --pin-dir "${pin[before]}" >/dev/null
"$TOP_DIR/load.sh" --quiet --cgroup "${cg[closed]}" --pin-dir "${pin[closed]}" >/dev/null
"$TOP_DIR/load.sh" --quiet --cgroup "${cg[open]}" --pin-dir "${pin[open]}" >/dev/null

# Open the gate of "open": a pair whose server set SO_RCVLOWAT, held until
# its stdin (a FIFO we hold) closes.
mkfifo "$tmp/hold"
exec 8<>"$tmp/hold"
(echo "$BASHPID" >"${cg[open]}/cgroup.procs" && exec "$PROBE" -p 27995 opt_hold) \
	<"$tmp/hold" 8<&- >"$tmp/hold.out" 2>&1 &
hold_pid=$!
for _ in $(seq 100); do
	grep -qx ready "$tmp/hold.out" && break
	sleep 0.05
done
gate=$(bpftool -j map dump pinned "${pin[open]}/$PIN_OPT_GATE" | jq '.[0].formatted.value.sockets')
((gate == 1)) || die "the gate of the open instance is $gate, not 1"

sysctl -qw kernel.bpf_stats_enabled=1

# run_stats PIN: "run_time_ns run_cnt" of the instance's bpf_redir.
run_stats() {
	bpftool -j prog show pinned "$1/$PIN_REDIR" | jq -r '"\(.run_time_ns // 0) \(.run_cnt // 0)"'
}

echo "# $(date -u '+%F %H:%M') UTC, $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg); $REPS x ${SECS}s; ns per bpf_redir run"
printf '%-6s %-8s %8s %8s %8s\n' rep variant 64B 64KiB gate
for ((rep = 1; rep <= REPS; rep++)); do
	for v in before closed open; do
		row=()
		for size in "${SIZES[@]}"; do
			read -r t0 c0 < <(run_stats "${pin[$v]}")
			(echo "$BASHPID" >"${cg[$v]}/cgroup.procs" &&
				exec "$SOCKBENCH" stream -p 0 -s "$size" -t "$SECS") >/dev/null
			read -r t1 c1 < <(run_stats "${pin[$v]}")
			row+=("$(((t1 - t0) / (c1 - c0 > 0 ? c1 - c0 : 1)))")
		done
		g=-
		[[ $v == before ]] ||
			g=$(bpftool -j map dump pinned "${pin[$v]}/$PIN_OPT_GATE" | jq '.[0].formatted.value.sockets')
		printf '%-6s %-8s %8s %8s %8s\n' "$rep" "$v" "${row[@]}" "$g"
	done
done
