#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# scale.sh - the benchmark at scale: many connections held open, and churn.
#
# - N held connections (1k, 10k, 30k; --quick: 1k): how fast they open, the
#   slab memory they take (/proc/meminfo Slab and SUnreclaim, before and
#   after, per connection: both ends), the ping-pong round trip of one more
#   pair while they sit idle, and how long status.sh takes with them in the
#   map;
# - churn: 20,000 short connections (--quick: 2,000), two at a time, 64
#   bytes each way: the rate, and the sockhash back at its size before.
#
# bench/connhold opens them, both ends in one of its worker processes, none
# of which holds more than 18,000 file descriptors (this host allows 20,000
# per process).  Plain TCP and the bypass take turns within each repetition,
# in one network namespace, in two cgroups of our own; each figure is the
# median of the repetitions.  Memory is the whole host's: other work moves
# it too, which the repetitions show as spread.
#
# Output: bench/out/scale.jsonl (every run) and bench/out/scale.md (tables).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"

readonly BENCH_DIR=$TOP_DIR/bench
readonly OUT=$BENCH_DIR/out
readonly RAW=$OUT/scale.jsonl
readonly CONNHOLD=$BENCH_DIR/connhold
readonly MODES="tcp bypass"

quick=0
[[ ${1:-} == --quick ]] && quick=1
if ((quick)); then
	reps=${REPS:-1} sizes="1000" churn=2000 pp_secs=0.5
else
	reps=${REPS:-3} sizes="1000 10000 30000" churn=20000 pp_secs=2
fi

need_root "$@"
need_tools bpftool jq ip findmnt
[[ -x $CONNHOLD ]] || die "$CONNHOLD not found: build it first with 'make'"

cgroot=$(cgroup2_root)
bpffs=$(bpffs_dir)
readonly NS=sockscale-$$
readonly CG_TCP=$cgroot/sockscale-$$-tcp
readonly CG_BYPASS=$cgroot/sockscale-$$-bypass
readonly PIN=$bpffs/sockscale-$$
HOLD_PID=

cleanup() {
	local cg

	[[ -z $HOLD_PID ]] || kill "$HOLD_PID" 2>/dev/null || true
	"$TOP_DIR/unload.sh" --pin-dir "$PIN" >/dev/null 2>&1 || true
	for cg in "$CG_TCP" "$CG_BYPASS"; do
		cgroup_remove "$cg" || true
	done
	ip netns del "$NS" 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

cgroup_of() {
	[[ $1 == bypass ]] && echo "$CG_BYPASS" || echo "$CG_TCP"
}

# in_cg CGROUP CMD...: CMD in CGROUP and in our netns.
in_cg() {
	local cg=$1

	shift
	(echo "$BASHPID" >"$cg/cgroup.procs" && exec ip netns exec "$NS" "$@")
}

# slab: "Slab SUnreclaim" in bytes.
slab() {
	awk '/^Slab:/ { s = $2 } /^SUnreclaim:/ { u = $2 }
		END { print s * 1024, u * 1024 }' /proc/meminfo
}

status_json() {
	"$TOP_DIR/status.sh" --pin-dir "$PIN" --json
}

# status_secs: the median wall time of 5 runs of status.sh --json, in ms.
status_ms() {
	local i t0 ts=()

	for i in 1 2 3 4 5; do
		t0=$EPOCHREALTIME
		status_json >/dev/null
		ts+=("$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", (b - a) * 1000 }')")
	done
	printf '%s\n' "${ts[@]}" | sort -n | sed -n 3p
}

# held MODE N: one run of N held connections.
held() {
	local mode=$1 n=$2 cg s0 u0 s1 u1 open pp st_ms=null fill=null line
	local in out

	cg=$(cgroup_of "$mode")
	in=$OUT/scale.in.$$ out=$OUT/scale.out.$$
	rm -f "$in" "$out"
	mkfifo "$in" "$out"
	read -r s0 u0 < <(slab)
	in_cg "$cg" "$CONNHOLD" hold -n "$n" <"$in" >"$out" &
	HOLD_PID=$!
	exec {w}>"$in" {r}<"$out"
	read -r -t 300 open <&"$r" || die "connhold did not open $n connections"
	# Let the kernel's deferred frees and per-CPU caches settle.
	sleep 1
	read -r s1 u1 < <(slab)
	if [[ $mode == bypass ]]; then
		fill=$(status_json | jq .map.sockets)
		((fill == 2 * n)) || die "$n connections held, but $fill sockets in the sockhash"
		st_ms=$(status_ms)
	fi
	echo "pingpong $pp_secs 64" >&"$w"
	read -r -t 60 pp <&"$r" || die "the ping-pong failed"
	exec {w}>&-
	wait "$HOLD_PID"
	HOLD_PID=
	exec {r}<&-
	rm -f "$in" "$out"
	line=$(jq -cn --arg mode "$mode" --argjson n "$n" --argjson rep "$rep" \
		--argjson open "$open" --argjson pp "$pp" \
		--argjson slab "$(((s1 - s0) / n))" --argjson unrecl "$(((u1 - u0) / n))" \
		--argjson fill "$fill" --argjson status_ms "$st_ms" '
		{test: "held", mode: $mode, n: $n, rep: $rep, rate: $open.rate,
		 slab_per_conn: $slab, sunreclaim_per_conn: $unrecl,
		 p50_us: $pp.p50_us, p99_us: $pp.p99_us, sockets: $fill,
		 status_ms: $status_ms}')
	echo "$line" >>"$RAW"
	info "$line"
}

# churned MODE: CHURN short connections, two at a time.
churned() {
	local mode=$1 cg before=null after=null walked=null ins0=0 ins1=0 res line

	cg=$(cgroup_of "$mode")
	if [[ $mode == bypass ]]; then
		read -r before ins0 < <(status_json | jq -r '"\(.map.sockets) \(.counters.sockets_inserted)"')
	fi
	res=$(in_cg "$cg" "$CONNHOLD" churn -n "$churn" -P 2) || die "churn failed"
	if [[ $mode == bypass ]]; then
		read -r after walked ins1 < <("$TOP_DIR/status.sh" --pin-dir "$PIN" --json --walk |
			jq -r '"\(.map.sockets) \(.map.walked) \(.counters.sockets_inserted)"')
		((after == before && walked == before)) ||
			die "after churn the sockhash holds $walked sockets (counted: $after), not $before"
		((ins1 - ins0 == 2 * churn)) ||
			die "churn: $((ins1 - ins0)) sockets inserted, not $((2 * churn))"
	fi
	line=$(jq -cn --arg mode "$mode" --argjson rep "$rep" --argjson res "$res" \
		--argjson before "$before" --argjson after "$after" '
		{test: "churn", mode: $mode, n: $res.conns, rep: $rep, rate: $res.rate,
		 sockets_before: $before, sockets_after: $after}')
	echo "$line" >>"$RAW"
	info "$line"
}

mkdir -p "$OUT"
: >"$RAW"
mkdir "$CG_TCP" "$CG_BYPASS"
ip netns add "$NS"
ip -n "$NS" link set lo up
"$TOP_DIR/load.sh" --cgroup "$CG_BYPASS" --pin-dir "$PIN" --quiet \
	--max-entries 131072 >/dev/null
info "$( ((quick)) && echo quick || echo full) run: $reps repetitions of $sizes held connections, $churn churned"

for ((rep = 1; rep <= reps; rep++)); do
	for n in $sizes; do
		for mode in $( ((rep % 2)) && echo "$MODES" || echo "$MODES" | tr ' ' '\n' | tac); do
			held "$mode" "$n"
		done
	done
	for mode in $( ((rep % 2)) && echo "$MODES" || echo "$MODES" | tr ' ' '\n' | tac); do
		churned "$mode"
	done
done

jq -rs --arg date "$(date -u '+%Y-%m-%d %H:%M UTC')" \
	--arg load "$(cut -d' ' -f1-3 /proc/loadavg)" --arg kernel "$(uname -r)" '
	def median: sort | if length == 0 then null else .[(length - 1) / 2 | floor] end;
	def r: if . == null then "-" elif . >= 100 then round else (. * 10 | round) / 10 end;
	def span: "\(min | r)–\(max | r)";
	def cell($v): "\($v | median | r) (\($v | span))";
	def kb: map(. / 1024);
	"## Scale: held connections and churn",
	"",
	"Run: \($date), Linux \($kernel), load average \($load) at the end; `bench/scale.sh` (bench/connhold).",
	"Plain TCP and the bypass take turns; median (min–max) of \(map(.rep) | max) repetitions.",
	"Memory is the host'"'"'s `/proc/meminfo` before and after opening, per connection (both ends), so other work on the host adds spread.",
	"",
	"| connections | | open rate (conn/s) | Slab per conn (KiB) | SUnreclaim per conn (KiB) | ping-pong p50 / p99 (µs) | status.sh (ms) |",
	"|---:|---|---:|---:|---:|---:|---:|",
	(map(select(.test == "held")) | group_by(.n)[] | . as $g | ($g[0].n) as $n |
		(group_by(.mode) | map({key: .[0].mode, value: .}) | from_entries) as $m |
		("tcp", "bypass") as $mode | ($m[$mode] // []) as $x | select($x | length > 0) |
		"| \($n) | \(if $mode == "tcp" then "TCP" else "bypass" end) | \(cell($x | map(.rate))) | \(cell($x | map(.slab_per_conn) | kb)) | \(cell($x | map(.sunreclaim_per_conn) | kb)) | \($x | map(.p50_us) | median | r) / \($x | map(.p99_us) | median | r) | \(if $mode == "bypass" then cell($x | map(.status_ms)) else "-" end) |"),
	"",
	(map(select(.test == "held")) | group_by(.n) | map(
		(map(select(.mode == "bypass") | .sunreclaim_per_conn) | median) as $b |
		(map(select(.mode == "tcp") | .sunreclaim_per_conn) | median) as $t |
		"- \(.[0].n) connections: the bypass adds \((($b - $t) / 1024) | r) KiB of unreclaimable slab per connection (\((($b - $t) / 2048) | r) KiB per socket)") | .[]),
	"",
	"| churn | | connections per second | sockhash before → after |",
	"|---:|---|---:|---:|",
	(map(select(.test == "churn")) | group_by(.mode) | sort_by(.[0].mode == "bypass")[] |
		"| \(.[0].n) | \(if .[0].mode == "tcp" then "TCP" else "bypass" end) | \(cell(map(.rate))) | \(if .[0].mode == "bypass" then (map("\(.sockets_before) → \(.sockets_after)") | unique | join(", ")) else "-" end) |")
' "$RAW" >"$OUT/scale.md"
cat "$OUT/scale.md"
