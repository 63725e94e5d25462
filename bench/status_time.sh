#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# status_time.sh [ENTRIES...] - how long status.sh takes with that many
# sockets in the sockhash (default: 0 65536 1048576).
#
# Loads the bypass (--max-entries 1048576) in a cgroup and network
# namespace of our own, then fills its sockhash with bench/connhold, level
# by level: ENTRIES / 2 connections, both ends held, spread over worker
# processes of 9,000 connections each.  At each level: status.sh --json 11
# times (median wall time, and user + system CPU time, which the other work
# on a busy host moves less), status.sh --walk once (the map counted entry
# by entry), and "bpftool map dump | jq length", the old way, once below
# 100,000 entries.  Needs about 5 GiB of memory at a million entries.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"

readonly CONNHOLD=$TOP_DIR/bench/connhold
levels=("$@")
((${#levels[@]})) || levels=(0 65536 1048576)

need_root "$@"
need_tools bpftool jq ip findmnt
[[ -x $CONNHOLD ]] || die "$CONNHOLD not found: build it first with 'make'"

cgroot=$(cgroup2_root)
readonly NS=statustime-$$
readonly CG=$cgroot/statustime-$$
readonly PIN=$(bpffs_dir)/statustime-$$
FIFOS=()
PIDS=()
TIMES=$(mktemp)

cleanup() {
	local pid

	for pid in "${PIDS[@]}"; do
		kill "$pid" 2>/dev/null || true
	done
	"$TOP_DIR/unload.sh" --pin-dir "$PIN" >/dev/null 2>&1 || true
	if [[ -d $CG ]]; then
		for pid in $(cat "$CG/cgroup.procs" 2>/dev/null); do
			kill -9 "$pid" 2>/dev/null || true
		done
		for _ in $(seq 300); do
			rmdir "$CG" 2>/dev/null && break
			sleep 0.1
		done
	fi
	ip netns del "$NS" 2>/dev/null || true
	rm -f "${FIFOS[@]}" "$TIMES"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# times N CMD...: "median_wall_ms median_cpu_ms" of N runs of CMD.
times_ms() {
	local n=$1 i out walls=() cpus=()

	shift
	for ((i = 0; i < n; i++)); do
		/usr/bin/time -o "$TIMES" -f '%e %U %S' "$@" >/dev/null 2>&1 || true
		read -r e u s <"$TIMES"
		walls+=("$(awk -v e="$e" 'BEGIN { print e * 1000 }')")
		cpus+=("$(awk -v u="$u" -v s="$s" 'BEGIN { print (u + s) * 1000 }')")
	done
	echo "$(printf '%s\n' "${walls[@]}" | sort -n | sed -n "$((n / 2 + 1))p")" \
		"$(printf '%s\n' "${cpus[@]}" | sort -n | sed -n "$((n / 2 + 1))p")"
}

mkdir "$CG"
ip netns add "$NS"
ip -n "$NS" link set lo up
ip netns exec "$NS" sysctl -qw net.ipv4.ip_local_port_range="1024 65535"
"$TOP_DIR/load.sh" --cgroup "$CG" --pin-dir "$PIN" --quiet --max-entries 1048576 >/dev/null

held=0
for level in "${levels[@]}"; do
	want=$((level / 2 - held))
	if ((want > 0)); then
		fifo=$TOP_DIR/bench/out/statustime.$$.$level
		mkdir -p "${fifo%/*}"
		mkfifo "$fifo"
		FIFOS+=("$fifo")
		t0=$EPOCHREALTIME
		(echo "$BASHPID" >"$CG/cgroup.procs" &&
			exec ip netns exec "$NS" "$CONNHOLD" hold -n "$want") <"$fifo" >"$fifo.out" &
		PIDS+=($!)
		exec {w}>"$fifo"
		for _ in $(seq 3000); do
			[[ -s $fifo.out ]] && break
			kill -0 "${PIDS[-1]}" 2>/dev/null || die "connhold failed"
			sleep 0.2
		done
		FIFOS+=("$fifo.out")
		info "opened $want connections in $(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.0f", b - a }') s: $(cat "$fifo.out")"
		held=$((held + want))
	fi
	sockets=$("$TOP_DIR/status.sh" --pin-dir "$PIN" --json | jq .map.sockets)
	((sockets == 2 * held)) || die "$((2 * held)) sockets held, $sockets in the sockhash"
	read -r wall cpu < <(times_ms 11 "$TOP_DIR/status.sh" --pin-dir "$PIN" --json)
	read -r twall tcpu < <(times_ms 11 "$TOP_DIR/status.sh" --pin-dir "$PIN")
	read -r pwall pcpu < <(times_ms 11 "$TOP_DIR/status.sh" --pin-dir "$PIN" --prom)
	read -r wwall wcpu < <(times_ms 1 "$TOP_DIR/status.sh" --pin-dir "$PIN" --json --walk)
	dump="-"
	if ((sockets < 100000)); then
		read -r dwall dcpu < <(times_ms 1 bash -c "bpftool -j map dump pinned '$PIN/$PIN_MAP' | jq length")
		dump="$dwall ms (cpu $dcpu ms)"
	fi
	echo "entries $sockets: status.sh --json $wall ms (cpu $cpu ms), text $twall ms (cpu $tcpu), --prom $pwall ms (cpu $pcpu); --walk $wwall ms (cpu $wcpu ms); bpftool dump $dump; load $(cut -d' ' -f1-3 /proc/loadavg)"
done
