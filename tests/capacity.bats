#!/usr/bin/env bats
# SPDX-License-Identifier: GPL-2.0
#
# Capacity: load.sh --max-entries sizes the sockhash at load time, status.sh
# says how full it is without walking it, and that count is exact: it is
# checked against the map's own entries, counted one by one (status.sh
# --walk), after every way a socket can leave the map.

BASE_PORT=28000
load helpers

CONNHOLD=$TOP/bench/connhold
SOCKBENCH=$TOP/bench/sockbench

setup() {
	common_setup
	[[ -x $CONNHOLD ]] || skip "bench/connhold is not built; run make"
	declare -gA HOLD_W=() HOLD_R=() HOLD_PID=()
	AGENT_PIN=
}

teardown() {
	if [[ -n $AGENT_PIN ]]; then
		bpftool cgroup detach "$TEST_CG" cgroup_sock_ops pinned "$AGENT_PIN/agent" 2>/dev/null || true
		rm -f "$AGENT_PIN"/*
		rmdir "$AGENT_PIN"
	fi
	common_teardown
}

# hold_start NAME N: bench/connhold holding N connections in the test
# cgroup, driven through two FIFOs; returns once all are open.
hold_start() {
	local name=$1 n=$2 line fd

	mkfifo "$TMP/$name.in" "$TMP/$name.out"
	# Without bats' fd 3, or bats waits for it to close, and without the
	# other holders' FIFOs, or they never see EOF.
	(
		for fd in "${HOLD_W[@]}" "${HOLD_R[@]}"; do
			exec {fd}>&-
		done
		cg_exec "$TEST_CG" "$CONNHOLD" hold -n "$n"
	) 3>&- <"$TMP/$name.in" >"$TMP/$name.out" 2>"$TMP/$name.err" &
	PIDS+=($!)
	HOLD_PID[$name]=$!
	exec {fd}>"$TMP/$name.in"
	HOLD_W[$name]=$fd
	exec {fd}<"$TMP/$name.out"
	HOLD_R[$name]=$fd
	read -r -t 60 line <&"${HOLD_R[$name]}" || true
	echo "$name: $line $(cat "$TMP/$name.err")"
	[[ $line == *"\"conns\":$n,"* ]]
}

# hold_cmd NAME CMD...: one command; its answer on stdout.
hold_cmd() {
	local name=$1 line

	shift
	echo "$*" >&"${HOLD_W[$name]}"
	read -r -t 60 line <&"${HOLD_R[$name]}" || true
	echo "$name: $* -> $line $(cat "$TMP/$name.err")"
	[[ $line == *"\"cmd\":\"$1\""* ]]
}

# hold_stop NAME: EOF to connhold, which closes everything and exits 0.
hold_stop() {
	local name=$1 fd

	fd=${HOLD_W[$name]}
	exec {fd}>&-
	wait "${HOLD_PID[$name]}"
}

# count: "COUNTED WALKED", the sockets in the map by the counters and by
# walking the map.
count() {
	"$TOP/status.sh" --json --walk | jq -r '"\(.map.sockets) \(.map.walked)"'
}

# expect_sockets N: the counters and the map agree, on N sockets.  Closing
# is synchronous on loopback, but give the kernel a moment anyway.
expect_sockets() {
	local c

	for _ in $(seq 50); do
		c=$(count)
		[[ $c == "$1 $1" ]] && break
		sleep 0.1
	done
	echo "expected $1 sockets; counted, walked: $c"
	[[ $c == "$1 $1" ]]
}

@test "load.sh --max-entries sizes the sockhash at load time, without a rebuild" {
	local before

	before=$(stat -c %Y "$TOP/bpf_sockops.o")
	load_bypass --max-entries 1048576
	(($(bpftool -j map show pinned "$SOCKOPS_PIN_DIR/$PIN_MAP" | jq .max_entries) == 1048576))
	# The key and value sizes come from the object's BTF.
	bpftool -j map show pinned "$SOCKOPS_PIN_DIR/$PIN_MAP" |
		jq -e '.type == "sockhash" and .bytes_key == 56 and .bytes_value == 8'
	"$TOP/status.sh" --json | jq -e '.map.max_entries == 1048576 and .map.sockets == 0'
	[[ $("$TOP/status.sh") == *"0 sockets now, capacity 1048576 (0% full)"* ]]
	# The other maps stay as they are.
	(($(bpftool -j map show pinned "$SOCKOPS_PIN_DIR/$PIN_STATS" | jq .max_entries) == 1))
	(($(bpftool -j map show pinned "$SOCKOPS_PIN_DIR/$PIN_CONFIG" | jq .max_entries) == 1))
	# bpf_sockops.o was loaded onto that map, not onto one of its own.
	map_id=$(bpftool -j map show pinned "$SOCKOPS_PIN_DIR/$PIN_MAP" | jq .id)
	bpftool -j prog show pinned "$SOCKOPS_PIN_DIR/$PIN_SOCKOPS" |
		jq -e --argjson m "$map_id" '.map_ids | index($m) != null'
	[[ ! -e $SOCKOPS_PIN_DIR/$PIN_MAP_NEW ]]
	unload_bypass

	# The default is MAX_ENTRIES of bpf_sockops.h.
	load_bypass
	(($(bpftool -j map show pinned "$SOCKOPS_PIN_DIR/$PIN_MAP" | jq .max_entries) == 65536))
	# Nothing was rebuilt.
	(($(stat -c %Y "$TOP/bpf_sockops.o") == before))
}

@test "load.sh refuses a bad --max-entries before changing anything" {
	local n

	for n in 0 1 -4 abc 1e6 16777217 99999999999999999999 ""; do
		run "$TOP/load.sh" --cgroup "$TEST_CG" --max-entries "$n"
		echo "--max-entries '$n': $output"
		((status != 0))
		[[ $output == *"--max-entries $n: give a number of sockets from 2 to 16777216"* ]]
		[[ ! -e $SOCKOPS_PIN_DIR ]]
		(($(cg_progs "$TEST_CG") == 0))
	done
}

@test "a second load.sh is a no-op, but refuses another --max-entries: a live map keeps its size" {
	load_bypass --max-entries 4096
	run load_bypass --max-entries 4096
	[[ $status -eq 0 && $output == *"already loaded"*"sockhash of 4096 entries"* ]]
	run load_bypass
	[[ $status -eq 0 && $output == *"already loaded"* ]]
	run load_bypass --max-entries 8192
	echo "$output"
	[[ $status -ne 0 ]]
	[[ $output == *"with a sockhash of 4096 entries; run unload.sh first"* ]]
	(($(bpftool -j map show pinned "$SOCKOPS_PIN_DIR/$PIN_MAP" | jq .max_entries) == 4096))
	(($(cg_progs "$TEST_CG") == 3))
}

@test "a full sockhash: status says so, counts the inserts it refused, and frees up as connections close" {
	load_bypass --quiet --max-entries 20
	# 9 connections: 18 of 20 sockets, 90%: a warning already.
	hold_start A 9
	expect_sockets 18
	run "$TOP/status.sh"
	echo "$output"
	[[ $output == *"18 sockets now, capacity 20 (90% full)"* ]]
	[[ $output == *"warning:   the sockhash is 90% full (18 of 20 sockets)"* ]]

	# 4 more: the first fits, the other three (six sockets) do not.
	hold_start B 4
	expect_sockets 20
	(($(counter insert_map_full) == 6))
	(($(counter insert_failed) == 6))
	(($(counter sockets_inserted) == 20))
	run "$TOP/status.sh"
	echo "$output"
	[[ $output == *"20 sockets now, capacity 20 (100% full)"* ]]
	[[ $output == *"6 inserts failed because it was full"* ]]
	[[ $output == *"warning:   the sockhash is full (20 of 20 sockets): new connections use plain TCP; load with a larger --max-entries"* ]]
	"$TOP/status.sh" --json | jq -e '
		.map.sockets == 20 and .map.max_entries == 20 and .map.full and
		.map.fill == 1 and .map.insert_map_full == 6 and
		(.warnings[0] | startswith("the sockhash is full"))'

	# The refused sockets hold no entry: closing them changes nothing.
	hold_cmd B close 4
	expect_sockets 18
	hold_stop A
	expect_sockets 0
	"$TOP/status.sh" --json | jq -e '.map.full == false and .warnings == []'
	# Room again: new connections are inserted.
	hold_start C 2
	expect_sockets 4
	(($(counter insert_map_full) == 6))
	hold_stop B
	hold_stop C
	expect_sockets 0
}

@test "the socket count equals the map's entries after closes, resets, half-closes, a dropped backlog and churn" {
	load_bypass --quiet
	hold_start H 100
	expect_sockets 200

	# Both ends closed, the client's first.
	hold_cmd H close 10
	expect_sockets 180
	# The client resets (SO_LINGER 0): its server end reaches TCP_CLOSE
	# but stays in the map, open, until its owner closes it.
	hold_cmd H reset 10
	expect_sockets 170
	# Both FINs exchanged, both ends still open: still in the map.
	hold_cmd H shutdown 10
	expect_sockets 170
	# The reset server ends, the half-closed pairs, ten open pairs.
	hold_cmd H close 30
	expect_sockets 120
	# Connections never accept()ed: their server end has no file, and
	# leaves the map when the listener closes (sock_map_destroy).
	hold_cmd H backlog 5
	expect_sockets 130
	hold_cmd H pingpong 0.2 64
	expect_sockets 130
	hold_cmd H unlisten
	expect_sockets 125

	# 3000 short connections, two at a time, alongside.
	in_cg "$CONNHOLD" churn -n 3000 -P 2
	expect_sockets 125
	hold_stop H
	expect_sockets 0
	(($(counter sockets_inserted) == 2 * (100 + 5 + 1 + 3000)))
	(($(counter sockets_removed) == $(counter sockets_inserted)))
	(($(counter insert_failed) == 0))
}

@test "status.sh --walk warns when the map and the counters disagree (an entry deleted by hand)" {
	local key

	load_bypass --quiet
	hold_start H 2
	expect_sockets 4
	# Deleting an entry from user space is the one removal nothing
	# counts (and it drops the socket's queued bytes): do not.
	key=$(bpftool -j map getnext pinned "$SOCKOPS_PIN_DIR/$PIN_MAP" |
		jq -r '.next_key | map(ltrimstr("0x")) | join(" ")')
	bpftool map delete pinned "$SOCKOPS_PIN_DIR/$PIN_MAP" key hex $key
	run "$TOP/status.sh" --walk
	echo "$output"
	[[ $output == *"4 sockets now, capacity 65536"*"3 counted one by one"* ]]
	[[ $output == *"warning:   the sockhash holds 3 sockets, the counters say 4"* ]]
	# Without --walk the count is the counters'.
	run "$TOP/status.sh"
	[[ $output != *warning* ]]
	hold_stop H
}

# The helper bpf_sock_ops_cb_flags_set() replaces a socket's flags.  An
# agent's sock_ops program attached before ours sets BPF_SOCK_OPS_RTO_CB_FLAG
# at ESTABLISHED; ours adds BPF_SOCK_OPS_STATE_CB_FLAG; the agent's program,
# called for STATE_CB thanks to ours, records the flags it sees then.
@test "the state callback flag is added to another agent's sock_ops flags, not put in their place" {
	cat >"$TMP/agent.c" <<'EOF'
// SPDX-License-Identifier: GPL-2.0
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} seen_flags SEC(".maps");

SEC("sockops")
int agent(struct bpf_sock_ops *skops)
{
	__u32 zero = 0, *seen;

	switch (skops->op) {
	case BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB:
	case BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB:
		bpf_sock_ops_cb_flags_set(skops, BPF_SOCK_OPS_RTO_CB_FLAG);
		break;
	case BPF_SOCK_OPS_STATE_CB:
		seen = bpf_map_lookup_elem(&seen_flags, &zero);
		if (seen)
			*seen |= skops->bpf_sock_ops_cb_flags;
		break;
	}
	return 1;
}

char _license[] SEC("license") = "GPL";
EOF
	bpf_cc "$TMP/agent.c" "$TMP/agent.o"
	AGENT_PIN=$BPFFS/sockops-agent-$$-$BATS_TEST_NUMBER
	mkdir "$AGENT_PIN"
	bpftool prog load "$TMP/agent.o" "$AGENT_PIN/agent" pinmaps "$AGENT_PIN"
	bpftool cgroup attach "$TEST_CG" cgroup_sock_ops pinned "$AGENT_PIN/agent" multi
	load_bypass --quiet

	hold_start H 3
	hold_stop H
	expect_sockets 0
	(($(counter sockets_inserted) == 6))
	# RTO_CB (1) kept, STATE_CB (4) added: the agent saw both.
	(($(bpftool -j map dump pinned "$AGENT_PIN/seen_flags" | jq '.[0].formatted.value') == 5))
}

@test "state callbacks only where a close() will not count: none on a connect()ed socket, none on an accepted one once it has a file" {
	[[ -x $SOCKBENCH ]] || skip "bench/sockbench is not built; run make"
	# A second sock_ops program counts the state callbacks it is called
	# for: the flag is per socket, so it sees every one bpf_sockmap asked
	# for.
	cat >"$TMP/agent.c" <<'EOC'
// SPDX-License-Identifier: GPL-2.0
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

/* [0]: on the server's sockets, [1]: on the others; [2]: the server's port. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 3);
	__type(key, __u32);
	__type(value, __u64);
} state_cbs SEC(".maps");

SEC("sockops")
int agent(struct bpf_sock_ops *skops)
{
	__u32 k = 2, local;
	__u64 *port, *n;

	if (skops->op != BPF_SOCK_OPS_STATE_CB)
		return 1;
	local = skops->local_port;	/* host byte order */
	port = bpf_map_lookup_elem(&state_cbs, &k);
	if (!port)
		return 1;
	k = local == *port ? 0 : 1;
	n = bpf_map_lookup_elem(&state_cbs, &k);
	if (n)
		__sync_fetch_and_add(n, 1);
	return 1;
}

char _license[] SEC("license") = "GPL";
EOC
	bpf_cc "$TMP/agent.c" "$TMP/agent.o"
	AGENT_PIN=$BPFFS/sockops-agent-$$-$BATS_TEST_NUMBER
	mkdir "$AGENT_PIN"
	bpftool prog load "$TMP/agent.o" "$AGENT_PIN/agent" pinmaps "$AGENT_PIN"
	bpftool map update pinned "$AGENT_PIN/state_cbs" key $(u32_bytes 2) value $(u64_bytes "$PORT")
	bpftool cgroup attach "$TEST_CG" cgroup_sock_ops pinned "$AGENT_PIN/agent" multi
	load_bypass --quiet

	# Each server socket sees two: SYN_RECV -> ESTABLISHED, before
	# accept() (tcp_rcv_state_process() runs PASSIVE_ESTABLISHED just
	# before it sets the state), and FIN_WAIT1 in close(), which finds a
	# file and turns the callback off; not FIN_WAIT2, TIME_WAIT or CLOSE.
	# The client, which connect()ed, never had it: no CLOSE_WAIT, LAST_ACK
	# or CLOSE.
	in_cg "$SOCKBENCH" connect -p "$PORT" -t 0.3 >"$TMP/run.json"
	conns=$(jq .conns "$TMP/run.json")
	read -r server client < <(bpftool -j map dump pinned "$AGENT_PIN/state_cbs" |
		jq -r '[.[].formatted.value] | "\(.[0]) \(.[1])"')
	echo "connections=$conns state callbacks: server $server, client $client"
	((conns > 0))
	((server == 2 * conns && client == 0))
	# And every socket was counted out at its close.
	(($(counter sockets_inserted) == 2 * conns))
	(($(counter sockets_removed) == 2 * conns))
	expect_sockets 0
}
