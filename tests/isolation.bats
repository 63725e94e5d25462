#!/usr/bin/env bats
# SPDX-License-Identifier: GPL-2.0
#
# Isolation and coexistence: the bypass never delivers a byte to the wrong
# socket (other network namespaces, other cgroups, other instances, stale
# sockets), and it shares its cgroup with other agents' programs.
#
# Every transfer is checksummed by tests/probes/xfer: each connection
# carries its own pseudo-random pattern, so a byte that lands in the wrong
# socket is caught at its exact offset.

BASE_PORT=40000
load helpers

setup() {
	common_setup
	# Each test's own network namespace: its ports and TIME_WAIT sockets
	# never meet those of other tests running on the host.
	NS=iso$$-$BATS_TEST_NUMBER
	netns_add "$NS"
	EXTRA_CGS=()		# more cgroups, children first
	EXTRA_PINS=()		# more bypass instances
	FOREIGN_PIN=		# the foreign agent's pins
}

teardown() {
	local pin cg

	for pin in "${EXTRA_PINS[@]}"; do
		"$TOP/unload.sh" --pin-dir "$pin" >/dev/null 2>&1 || true
	done
	if [[ -n $FOREIGN_PIN ]]; then
		bpftool cgroup detach "$TEST_CG" cgroup_sock_ops \
			pinned "$FOREIGN_PIN/prog" 2>/dev/null || true
		rm -rf "$FOREIGN_PIN"
	fi
	# Our extra cgroups; those below the test cgroup would go with it.
	for cg in "${EXTRA_CGS[@]}"; do
		cgroup_remove "$cg" || true
	done
	common_teardown
}

# new_cgroup PATH: a cgroup that teardown empties and removes.
new_cgroup() {
	mkdir "$1"
	EXTRA_CGS=("$1" "${EXTRA_CGS[@]}")
}

# recv_in NAME NS PORT ARGS... and send_in NAME NS PORT ARGS...: an xfer
# receiver or sender in the test cgroup (xfer_start in helpers.bash).
recv_in() { xfer_start "$1" "$TEST_CG" "$2" recv "${@:3}"; }
send_in() { xfer_start "$1" "$TEST_CG" "$2" send "${@:3}"; }

# one_port NS PORT: PORT is the only ephemeral port in NS, so every client
# there binds it: two namespaces then produce identical four-tuples.
one_port() {
	ip netns exec "$1" sysctl -qw net.ipv4.ip_local_port_range="$2 $2"
}

# client_tuple NS PORT: "local peer" of the client socket connected to PORT.
client_tuple() {
	ip netns exec "$1" ss -Htn "( dport = :$2 )" | awk '{ print $4, $5 }'
}

# stat_of PIN FIELD: a counter of the instance pinned in PIN.
stat_of() {
	SOCKOPS_PIN_DIR=$1 counter "$2"
}

# wait_gone prog|map ID: wait until the kernel has freed that object.
wait_gone() {
	for _ in $(seq 100); do
		bpftool "$1" show id "$2" >/dev/null 2>&1 || return 0
		sleep 0.1
	done
	echo "$1 $2 is still loaded"
	return 1
}

# attached_ids CG: IDs of the programs attached to CG, sorted.
attached_ids() {
	bpftool -j cgroup show "$1" | jq -r '.[].id' | sort -n | xargs
}

# ---------------------------------------------------------------------------
# Network namespaces

@test "a client in a network namespace is accelerated to a server in the same namespace" {
	load_bypass
	recv_in r "$NS" "$PORT"
	send_in s "$NS" "$PORT" -B 8000000 -R 4000000
	xfer_finish s r
	# Both directions and the 24-byte header, all through the bypass.
	expect_xfer_split $((8000000 + 4000000 + 24)) 0 s r
	(($(counter sockets_inserted) == 2))
	(($(map_entries) == 0))
}

@test "identical four-tuples in two namespaces never cross, while both stream both ways" {
	local a=$NS b=$NS-b ta tb

	netns_add "$b"
	one_port "$a" $((PORT + 9))
	one_port "$b" $((PORT + 9))
	load_bypass
	# The receivers stop reading after their first MiB until $TMP/go
	# exists, so both connections are open at once.
	recv_in ra "$a" "$PORT" -Z "$TMP/go"
	recv_in rb "$b" "$PORT" -Z "$TMP/go"
	send_in sa "$a" "$PORT" -B 16000000 -R 8000000 -s 1
	send_in sb "$b" "$PORT" -B 8000000 -R 16000000 -s 2
	# Both clients are connected, with the same tuple.
	for _ in $(seq 100); do
		ta=$(client_tuple "$a" "$PORT")
		tb=$(client_tuple "$b" "$PORT")
		[[ -n $ta && -n $tb ]] && break
		sleep 0.05
	done
	echo "tuple in $a: $ta; in $b: $tb"
	[[ $ta == "127.0.0.1:$((PORT + 9)) 127.0.0.1:$PORT" ]]
	[[ $tb == "$ta" ]]
	touch "$TMP/go"
	xfer_finish sa ra sb rb
	# Both connections went through the bypass, each to its own peer.
	(($(counter sockets_inserted) == 4))
	(($(counter insert_failed) == 0))
	expect_xfer_split $((2 * (24000000 + 24))) 0 sa ra sb rb
}

@test "identical four-tuples in two namespaces never cross, whatever the order of connect, half-close and close" {
	local a=$NS b=$NS-b total=0 p

	netns_add "$b"
	one_port "$a" $((PORT + 9))
	one_port "$b" $((PORT + 9))
	load_bypass

	# 1. A's server half-closes at once (it has nothing to send back)
	# while A's client streams; B's client half-closes at once while B's
	# server streams back.  A connects first.
	p=$PORT
	recv_in ra1 "$a" $p -z 1000
	recv_in rb1 "$b" $p -z 1000
	send_in sa1 "$a" $p -B 16000000 -R 0 -s 11
	send_in sb1 "$b" $p -B 0 -R 16000000 -s 12
	xfer_finish sa1 ra1 sb1 rb1
	total=$((total + 2 * (16000000 + 24)))

	# 2. The mirror image, B connecting first.
	p=$((PORT + 1))
	recv_in ra2 "$a" $p -z 1000
	recv_in rb2 "$b" $p -z 1000
	send_in sb2 "$b" $p -B 16000000 -R 0 -s 21
	send_in sa2 "$a" $p -B 0 -R 16000000 -s 22
	xfer_finish sa2 ra2 sb2 rb2
	total=$((total + 2 * (16000000 + 24)))

	# 3. B connects and stalls (its reader waits for $TMP/go3); A
	# connects, streams both ways and closes while B is open; then B
	# finishes.
	p=$((PORT + 2))
	recv_in rb3 "$b" $p -Z "$TMP/go3"
	recv_in ra3 "$a" $p
	send_in sb3 "$b" $p -B 8000000 -R 8000000 -s 31
	send_in sa3 "$a" $p -B 4000000 -R 4000000 -s 32
	xfer_finish sa3 ra3
	kill -0 "${XPID[sb3]}"		# B is still open after A closed
	touch "$TMP/go3"
	xfer_finish sb3 rb3
	total=$((total + 2 * (8000000 + 4000000 + 24)))

	# 4. A's client sends, half-closes and closes while A's server, not
	# reading until $TMP/go4 exists, still holds its end and the bytes
	# queued for it; then B connects with the same tuple.  B's client key is free again, A's
	# server key is not: only the netns cookie tells B's peer from A's.
	p=$((PORT + 3))
	recv_in ra4 "$a" $p -Z "$TMP/go4"
	recv_in rb4 "$b" $p
	send_in sa4 "$a" $p -B 4000000 -R 0 -s 41
	xfer_finish sa4
	send_in sb4 "$b" $p -B 4000000 -R 4000000 -s 42
	xfer_finish sb4 rb4
	kill -0 "${XPID[ra4]}"		# A's server was open all along
	touch "$TMP/go4"
	xfer_finish ra4
	total=$((total + 4000000 + 24 + 8000000 + 24))

	# Every connection went through the bypass; none fell back to TCP.
	(($(counter sockets_inserted) == 16))
	(($(counter insert_failed) == 0))
	expect_xfer_split "$total" 0 sa1 ra1 sb1 rb1 sa2 ra2 sb2 rb2 sa3 ra3 sb3 rb3 \
		sa4 ra4 sb4 rb4
	(($(map_entries) == 0))
}

# A socket stays in the sockhash until its owner closes it, even after both
# FINs have moved it to TCP_CLOSE.  Its four-tuple is free for a new
# connection meanwhile, and the new connection's key is the same: the new
# connection must not send into the old socket.
@test "a new connection reusing the tuple of a closed socket its owner still holds gets none of its bytes" {
	local ns=$NS

	one_port "$ns" $((PORT + 9))
	load_bypass
	# Connection 1: the server sends nothing back, so it sends the first
	# FIN; it stops reading after its first MiB until $TMP/go exists,
	# holding its socket open after both FINs.
	recv_in r "$ns" "$PORT" -n 2 -Z "$TMP/go"
	send_in s1 "$ns" "$PORT" -B 2000000 -R 0 -s 1
	xfer_finish s1
	# Connection 2, from the same port, once TIME_WAIT may be reused.
	sleep 1.5
	send_in s2 "$ns" "$PORT" -B 2000000 -R 0 -s 2
	xfer_finish s2
	touch "$TMP/go"
	xfer_finish r
}

# ---------------------------------------------------------------------------
# Cgroup scope

# lo_rx_bytes NS: bytes received on lo in network namespace NS.
lo_rx_bytes() {
	ip -n "$1" -j -s link show lo | jq '.[0].stats64.rx.bytes'
}

@test "a connection with one end outside the cgroup uses plain TCP: bytes on lo, intact, no redirect" {
	local out=$TEST_CG-out ns=$NS len=4000000 lo_bytes

	new_cgroup "$out"
	load_bypass
	# Server inside, client outside.
	recv_in r1 "$ns" "$PORT"
	xfer_start s1 "$out" "$ns" send "$PORT" -B $len -R $len
	xfer_finish s1 r1
	# Client inside, server outside.
	xfer_start r2 "$out" "$ns" recv "$PORT"
	send_in s2 "$ns" "$PORT" -B $len -R $len
	xfer_finish s2 r2

	# Every payload byte of both connections crossed lo.
	lo_bytes=$(lo_rx_bytes "$ns")
	echo "bytes on lo: $lo_bytes"
	((lo_bytes >= 4 * len + 48))
	# The inside end of each was inserted, found no peer, and passed
	# everything it sent to TCP.
	(($(counter sockets_inserted) == 2))
	# What they passed is what their outside peers got by TCP.
	expect_xfer_split $((2 * len + 24)) $((2 * len + 24)) s1 r2
}

@test "with both ends inside the cgroup lo carries no payload (the measure used above)" {
	local ns=$NS len=4000000 lo_bytes

	load_bypass
	recv_in r "$ns" "$PORT"
	send_in s "$ns" "$PORT" -B $len -R $len
	xfer_finish s r
	lo_bytes=$(lo_rx_bytes "$ns")
	echo "bytes on lo: $lo_bytes"
	expect_xfer_split $((2 * len + 24)) 0 s r
	# Handshake and teardown only (but for a race, helpers.bash).
	(($(tcp_in s r) > 0 || lo_bytes < 4096))
}

# ---------------------------------------------------------------------------
# Several instances

@test "two instances on sibling cgroups with their own pin dirs coexist, each in its own cgroup" {
	local cg2=$TEST_CG-b pin2=$SOCKOPS_PIN_DIR-b len=4000000 id1
	local pin1=$SOCKOPS_PIN_DIR

	new_cgroup "$cg2"
	load_bypass
	"$TOP/load.sh" --cgroup "$cg2" --pin-dir "$pin2"
	EXTRA_PINS+=("$pin2")

	# Inside the first cgroup: the first instance only.
	recv_in r1 "$NS" "$PORT"
	send_in s1 "$NS" "$PORT" -B $len -R $len
	xfer_finish s1 r1
	SOCKOPS_PIN_DIR=$pin1 expect_xfer_split $((2 * len + 24)) 0 s1 r1
	(($(stat_of "$pin2" sockets_inserted) == 0))

	# Inside the second: the second instance only.
	xfer_start r2 "$cg2" "$NS" recv $((PORT + 1))
	xfer_start s2 "$cg2" "$NS" send $((PORT + 1)) -B $len -R $len
	xfer_finish s2 r2
	SOCKOPS_PIN_DIR=$pin2 expect_xfer_split $((2 * len + 24)) 0 s2 r2
	(($(stat_of "$pin1" sockets_inserted) == 2))

	# Across the two: each end is in a different sockhash, so neither
	# finds its peer; plain TCP, intact.
	recv_in r3 "$NS" $((PORT + 2))
	xfer_start s3 "$cg2" "$NS" send $((PORT + 2)) -B $len -R $len
	xfer_finish s3 r3
	SOCKOPS_PIN_DIR=$pin1 expect_xfer_split $((3 * len + 24)) $len s1 r1 s3
	SOCKOPS_PIN_DIR=$pin2 expect_xfer_split $((3 * len + 48)) $((len + 24)) s2 r2 r3

	# Unloading the second leaves the first attached and working.
	id1=$(attached_ids "$TEST_CG")
	"$TOP/unload.sh" --pin-dir "$pin2"
	[[ ! -e $pin2 ]]
	[[ -z $(attached_ids "$cg2") ]]
	[[ $(attached_ids "$TEST_CG") == "$id1" ]]
	recv_in r4 "$NS" $((PORT + 3))
	send_in s4 "$NS" $((PORT + 3)) -B $len
	xfer_finish s4 r4
	SOCKOPS_PIN_DIR=$pin1 expect_xfer_split $((4 * len + 48)) $len s1 r1 s3 s4 r4
}

# The kernel runs a child cgroup's sock_ops programs before its parent's,
# and a socket takes the sk_msg program of the first sockhash it enters: a
# second insert fails (EBUSY: the socket has a verdict program already).  So
# the inner instance accelerates its cgroup, the outer one counts failures
# there, and no byte goes astray.
@test "nested instances: the inner one accelerates its cgroup, the outer one the rest, nothing is lost" {
	local inner=$TEST_CG/inner pin2=$SOCKOPS_PIN_DIR-inner len=4000000
	local pin1=$SOCKOPS_PIN_DIR

	new_cgroup "$inner"
	load_bypass
	"$TOP/load.sh" --cgroup "$inner" --pin-dir "$pin2"
	EXTRA_PINS+=("$pin2")

	# Both ends in the inner cgroup: the inner instance.
	xfer_start r1 "$inner" "$NS" recv "$PORT"
	xfer_start s1 "$inner" "$NS" send "$PORT" -B $len -R $len
	xfer_finish s1 r1
	SOCKOPS_PIN_DIR=$pin2 expect_xfer_split $((2 * len + 24)) 0 s1 r1
	(($(stat_of "$pin1" insert_failed) == 2))
	(($(stat_of "$pin1" bytes_redirected) == 0))

	# Both ends in the outer cgroup only: the outer instance.
	recv_in r2 "$NS" $((PORT + 1))
	send_in s2 "$NS" $((PORT + 1)) -B $len -R $len
	xfer_finish s2 r2
	SOCKOPS_PIN_DIR=$pin1 expect_xfer_split $((2 * len + 24)) 0 s2 r2

	# One end in each: plain TCP, intact.
	recv_in r3 "$NS" $((PORT + 2))
	xfer_start s3 "$inner" "$NS" send $((PORT + 2)) -B $len -R $len
	xfer_finish s3 r3
	SOCKOPS_PIN_DIR=$pin1 expect_xfer_split $((3 * len + 24)) $len s2 r2 s3
	SOCKOPS_PIN_DIR=$pin2 expect_xfer_split $((3 * len + 48)) $((len + 24)) s1 r1 r3
}

@test "a second load on the same pin dir with another cgroup refuses and changes nothing" {
	local cg2=$TEST_CG-b ids

	new_cgroup "$cg2"
	load_bypass
	ids=$(attached_ids "$TEST_CG")
	run "$TOP/load.sh" --cgroup "$cg2"
	echo "$output"
	((status == 1))
	[[ $output == *"already loaded from $SOCKOPS_PIN_DIR and attached to $TEST_CG"* ]]
	[[ $output == *"use another --pin-dir"* ]]
	[[ -z $(attached_ids "$cg2") ]]
	[[ $(attached_ids "$TEST_CG") == "$ids" ]]
	[[ -e $SOCKOPS_PIN_DIR/$PIN_SOCKOPS ]]
	# Loading again where it is attached is a no-op.
	run load_bypass
	((status == 0))
	[[ $output == *"already loaded"* ]]
	[[ $(attached_ids "$TEST_CG") == "$ids" ]]
}

# ---------------------------------------------------------------------------
# Another agent's sock_ops program on the same cgroup

# foreign_load [multi]: build a tiny sock_ops program that counts its runs
# in an array map, pin it in its own directory and attach it to the test
# cgroup, with "multi" or exclusively.
foreign_load() {
	cat >"$TMP/foreign.c" <<'END'
// SPDX-License-Identifier: GPL-2.0
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} foreign_runs SEC(".maps");

SEC("sockops")
int foreign_sockops(struct bpf_sock_ops *skops)
{
	__u32 zero = 0;
	__u64 *runs = bpf_map_lookup_elem(&foreign_runs, &zero);

	if (runs)
		__sync_fetch_and_add(runs, 1);
	return 1;
}

char _license[] SEC("license") = "GPL";
END
	bpf_cc "$TMP/foreign.c" "$TMP/foreign.o"
	FOREIGN_PIN=$BPFFS/sockops-foreign-$$-$BATS_TEST_NUMBER
	mkdir "$FOREIGN_PIN"
	bpftool prog load "$TMP/foreign.o" "$FOREIGN_PIN/prog" pinmaps "$FOREIGN_PIN"
	bpftool cgroup attach "$TEST_CG" cgroup_sock_ops pinned "$FOREIGN_PIN/prog" "$@"
	FOREIGN_ID=$(prog_id "$FOREIGN_PIN/prog")
}

foreign_runs() {
	bpftool -j map dump pinned "$FOREIGN_PIN/foreign_runs" | jq '.[0].formatted.value'
}

# one_xfer PORT: a 1 MB each way transfer inside the test cgroup.
one_xfer() {
	recv_in "r$1" "$NS" "$1"
	send_in "s$1" "$NS" "$1" -B 1000000 -R 1000000
	xfer_finish "s$1" "r$1"
}

# assert_foreign_grows PORT: a connection runs the foreign program again,
# and it is still attached.
assert_foreign_grows() {
	local before after

	before=$(foreign_runs)
	one_xfer "$1"
	after=$(foreign_runs)
	echo "foreign runs: $before -> $after"
	((after > before))
	[[ " $(attached_ids "$TEST_CG") " == *" $FOREIGN_ID "* ]]
}

@test "another agent's sock_ops program attached before ours keeps running through our load and unload" {
	foreign_load multi
	assert_foreign_grows "$PORT"

	load_bypass
	(($(bpftool -j cgroup show "$TEST_CG" | jq length) == 4))
	assert_foreign_grows $((PORT + 1))
	# ... while ours accelerates the same connection.
	expect_xfer_split 2000024 0 "s$((PORT + 1))" "r$((PORT + 1))"

	"$TOP/unload.sh"
	[[ $(attached_ids "$TEST_CG") == "$FOREIGN_ID" ]]
	assert_foreign_grows $((PORT + 2))
}

@test "another agent's sock_ops program attached after ours keeps running after our unload" {
	load_bypass
	foreign_load multi
	assert_foreign_grows "$PORT"
	expect_xfer_split 2000024 0 "s$PORT" "r$PORT"

	"$TOP/unload.sh"
	[[ $(attached_ids "$TEST_CG") == "$FOREIGN_ID" ]]
	assert_foreign_grows $((PORT + 1))
}

@test "a foreign sock_ops program attached exclusively: load.sh explains and changes nothing" {
	foreign_load		# no "multi": exclusive
	run load_bypass
	echo "$output"
	((status == 1))
	[[ $output == *"attached without 'multi' (exclusively)"* ]]
	[[ $output == *"foreign_sockops (id $FOREIGN_ID)"* ]]
	[[ ! -e $SOCKOPS_PIN_DIR ]]
	[[ $(attached_ids "$TEST_CG") == "$FOREIGN_ID" ]]
	assert_foreign_grows "$PORT"
}

# ---------------------------------------------------------------------------
# Connections that span load and unload

@test "a connection opened before load.sh stays plain TCP and intact; the next one is accelerated" {
	# The receiver stops reading after its first MiB until $TMP/go
	# exists: the connection is established and busy when load.sh runs.
	recv_in r "$NS" "$PORT" -Z "$TMP/go"
	send_in s "$NS" "$PORT" -B 64000000 -R 64000000
	for _ in $(seq 100); do
		[[ -n $(ip netns exec "$NS" ss -Htn state established "( dport = :$PORT )") ]] && break
		sleep 0.05
	done
	[[ -n $(ip netns exec "$NS" ss -Htn state established "( dport = :$PORT )") ]]
	load_bypass
	touch "$TMP/go"
	xfer_finish s r
	# It was never put in the sockhash: sk_msg never ran for it.
	(($(counter sockets_inserted) == 0))
	(($(counter msgs_redirected) + $(counter msgs_passed) == 0))

	one_xfer $((PORT + 1))
	expect_xfer_split 2000024 0 "s$((PORT + 1))" "r$((PORT + 1))"
}

@test "a connection open across unload.sh keeps its bypass and its queued bytes; the kernel frees the programs when it closes" {
	local sockops_id redir_id map_id

	load_bypass
	sockops_id=$(prog_id "$SOCKOPS_PIN_DIR/$PIN_SOCKOPS")
	redir_id=$(prog_id "$SOCKOPS_PIN_DIR/$PIN_REDIR")
	map_id=$(bpftool -j map show pinned "$SOCKOPS_PIN_DIR/$PIN_MAP" | jq .id)

	# The receiver stops reading after its first MiB until $TMP/go
	# exists, so redirected bytes wait, unread, in its queue when
	# unload.sh runs.
	recv_in r "$NS" "$PORT" -Z "$TMP/go"
	send_in s "$NS" "$PORT" -B 64000000 -R 64000000
	for _ in $(seq 100); do
		(($(counter bytes_redirected) > 2 * 1048576)) && break
		sleep 0.05
	done
	(($(counter bytes_redirected) > 2 * 1048576))
	"$TOP/unload.sh"
	[[ ! -e $SOCKOPS_PIN_DIR ]]
	[[ -z $(attached_ids "$TEST_CG") ]]
	wait_gone prog "$sockops_id"
	# The open sockets still hold the verdict program, and it the map.
	kill -0 "${XPID[s]}"
	bpftool prog show id "$redir_id"
	bpftool map show id "$map_id"

	touch "$TMP/go"
	xfer_finish s r

	# Closed: the kernel frees the program and the map.
	wait_gone prog "$redir_id"
	wait_gone map "$map_id"
}
