#!/usr/bin/env bats
# SPDX-License-Identifier: GPL-2.0
#
# Faults, with nothing lost: a full sockhash, connection churn, many
# parallel streams, load and unload in the middle of multi-GB transfers, and
# a reader that stops reading.  Every transfer is checksummed by
# tests/probes/xfer, which fails on any lost, reordered or foreign byte.
#
# Each test prints what it measured (bats shows it on failure; run with
# --show-output-of-passing-tests, bats >= 1.5, to see it always).

BASE_PORT=42000
load helpers

MiB=1048576

setup() {
	common_setup
	# Each test runs in its own network namespace: thousands of TIME_WAIT
	# sockets on ephemeral ports never meet other tests' listeners.
	NS=flt$$-$BATS_TEST_NUMBER
	netns_add "$NS"
}

# recv_in NAME PORT ARGS... and send_in NAME PORT ARGS...: an xfer receiver
# or sender in the test cgroup and namespace (xfer_start in helpers.bash).
recv_in() { xfer_start "$1" "$TEST_CG" "$NS" recv "${@:2}"; }
send_in() { xfer_start "$1" "$TEST_CG" "$NS" send "${@:2}"; }

# in_ns CMD...: run CMD in the test cgroup and namespace.
in_ns() { in_cg ip netns exec "$NS" "$@"; }

# wait_counter FIELD MIN: wait up to 10 s until counter FIELD exceeds MIN.
wait_counter() {
	for _ in $(seq 200); do
		(($(counter "$1") > $2)) && return 0
		sleep 0.05
	done
	echo "counter $1 stayed at $(counter "$1") <= $2"
	return 1
}

# wait_sent MIN: wait up to 10 s until the senders got rid of more than MIN
# bytes, by the bypass or, after a fallback, by TCP.
wait_sent() {
	for _ in $(seq 200); do
		(($(counter bytes_redirected) + $(counter bytes_passed) > $1)) && return 0
		sleep 0.05
	done
	echo "the senders got rid of only $(($(counter bytes_redirected) + $(counter bytes_passed))) bytes"
	return 1
}

# wait_entries N: wait up to 5 s until the sockhash holds N sockets.
wait_entries() {
	for _ in $(seq 100); do
		(($(map_entries) == $1)) && return 0
		sleep 0.05
	done
	echo "the sockhash holds $(map_entries) sockets, not $1"
	return 1
}

# elapsed T0: seconds since T0, a $EPOCHREALTIME.
elapsed() {
	awk -v t0="$1" -v t1="$EPOCHREALTIME" 'BEGIN { printf "%.1f", t1 - t0 }'
}

@test "full sockhash: new connections fall back to TCP with no error and intact data" {
	local hold=$((PORT + 1)) hold1 hold2

	# A sockhash of four sockets: two connections fill it.
	load_bypass --max-entries 4
	(($(bpftool -j map show pinned "$SOCKOPS_PIN_DIR/$PIN_MAP" | jq .max_entries) == 4))

	# Two idle connections hold the four entries: bash opens them with
	# /dev/tcp and sleeps; the receiver waits for a header forever.
	recv_in holder "$hold" -n 2
	spawn hold1 ip netns exec "$NS" bash -c "exec 3<>/dev/tcp/127.0.0.1/$hold; exec sleep 600"
	hold1=$LAST_PID
	spawn hold2 ip netns exec "$NS" bash -c "exec 3<>/dev/tcp/127.0.0.1/$hold; exec sleep 600"
	hold2=$LAST_PID
	wait_entries 4
	(($(counter sockets_inserted) == 4))

	# Eight more connections, two at a time, 1 MB each way: none fits.
	recv_in r "$PORT" -n 8
	send_in s "$PORT" -C 8 -P 2 -B 1000000 -R 1000000
	xfer_finish s r
	echo "insert_failed=$(counter insert_failed) entries=$(map_entries)"
	(($(counter insert_failed) == 16))
	(($(counter sockets_inserted) == 4))
	# Not in the map, so sk_msg never ran for them: plain TCP.
	(($(counter msgs_redirected) + $(counter msgs_passed) == 0))
	(($(map_entries) == 4))

	# Close the holders: the map empties and new connections are
	# accelerated again.
	kill "$hold1" "$hold2"
	wait_entries 0
	recv_in r2 $((PORT + 2))
	send_in s2 $((PORT + 2)) -B 1000000 -R 1000000
	xfer_finish s2 r2
	expect_xfer_split 2000024 0 s2 r2
}

@test "churn: 10,000 short connections, 8 at a time, all intact through the bypass, map empty after" {
	local n=10000 t

	load_bypass
	recv_in r "$PORT" -n $n
	t=$EPOCHREALTIME
	send_in s "$PORT" -C $n -P 8 -B 1000 -R 1000
	xfer_finish s r
	echo "$n connections in $(elapsed "$t") s"
	echo "inserted=$(counter sockets_inserted) failed=$(counter insert_failed)" \
		"redirected=$(counter bytes_redirected) passed=$(counter bytes_passed)"
	(($(counter sockets_inserted) == 2 * n))
	(($(counter insert_failed) == 0))
	# Every message of every connection (header, 1000 bytes each way)
	# went through the bypass.
	expect_split $((n * (1000 + 1000 + 24))) $((1000 + 24))
	# Closed sockets leave the sockhash.
	wait_entries 0
}

# iperf_bidir: iperf3 -P 8 --bidir of $size bytes in $NS, into iperf.json.
iperf_bidir() {
	spawn iperf3-s ip netns exec "$NS" iperf3 -s -1 -p "$PORT"
	wait_port "$PORT" "$NS"
	in_ns iperf3 -c 127.0.0.1 -p "$PORT" -P 8 --bidir -n "$size" -J >"$TMP/iperf.json"
	jq -c '{error, sent: .end.sum_sent.bytes, sent_back: .end.sum_sent_bidir_reverse.bytes}' "$TMP/iperf.json"
}

@test "parallel streams: iperf3 -P 8 --bidir and a checksummed 8-stream transfer are intact" {
	local size=$((128 * MiB)) sent

	load_bypass
	# A byte budget, not a duration: 8 MiB per stream and direction, below
	# the smallest queue bound, so no stream can be sent to TCP (see the
	# slow reader tests) and every byte must be redirected.
	iperf_bidir
	# Before the host guard moved to tcp_mem[0], iperf3 failed here once
	# in about a dozen runs on 6.1 in a 2 GiB guest ("unable to write to
	# stream socket: Cannot allocate memory", in its JSON, exit status
	# 0): a message that took TCP past tcp_mem[1] went to a reader holding
	# more than its share under memory pressure (memory.bats).
	[[ -z $(jq -r '.error // empty' "$TMP/iperf.json") ]]
	(($(jq '.end.streams | length' "$TMP/iperf.json") == 16))
	# iperf3 stops when the first direction has sent its budget.
	sent=$(jq '.end.sum_sent.bytes + .end.sum_sent_bidir_reverse.bytes' "$TMP/iperf.json")
	((sent >= size))
	# 16 data connections and the control connection, both ends each.
	(($(counter sockets_inserted) == 34))
	# Every byte was redirected, but on a small host where 16 lagging
	# readers reach the host guard, or for a race before 6.5
	# (helpers.bash): by TCP then, and counted.
	(($(counter bytes_redirected) + $(counter bytes_passed) >= sent))
	if (($(counter bytes_passed) > 0)); then
		(($(fallbacks_for_memory) + $(counter fallback_no_peer) > 0))
	fi

	# From here on, the counters grow by exactly the checksummed bytes.
	local redirected0 passed0 raced0
	redirected0=$(counter bytes_redirected)
	passed0=$(counter bytes_passed)
	raced0=$(counter fallback_no_peer)
	recv_in r $((PORT + 1)) -n 8
	send_in s $((PORT + 1)) -C 8 -P 8 -B $((12 * MiB)) -R $((12 * MiB))
	xfer_finish s r
	(($(counter bytes_passed) - passed0 == $(tcp_in s r)))
	(($(counter bytes_redirected) - redirected0 == 8 * (24 * MiB + 24) - $(tcp_in s r)))
	(($(tcp_in s r) == 0 || $(counter fallback_no_peer) > raced0 || $(fallbacks_for_memory) > 0))
}

@test "unload.sh during a 2 GiB each way checksummed transfer: it completes intact" {
	local t

	load_bypass
	recv_in r "$PORT" -n 2
	t=$EPOCHREALTIME
	send_in s "$PORT" -C 2 -P 2 -B $((1024 * MiB)) -R $((1024 * MiB))
	wait_sent $((256 * MiB))
	"$TOP/unload.sh"
	[[ ! -e $SOCKOPS_PIN_DIR ]]
	kill -0 "${XPID[s]}"		# unloaded mid-transfer
	xfer_finish s r
	echo "2 x 1 GiB each way in $(elapsed "$t") s"
	grep -q "bytes_in=$((2048 * MiB)) bytes_out=$((2048 * MiB))" "$TMP/r.out"
}

@test "load.sh during a 1 GiB each way checksummed transfer: it completes intact, as plain TCP" {
	local t

	# The receiver stops after its first MiB until $TMP/go exists, so the
	# transfer is still under way when load.sh is done, however slow the
	# host (an emulated guest took longer to load than to move 1 GiB).
	recv_in r "$PORT" -n 2 -Z "$TMP/go"
	t=$EPOCHREALTIME
	send_in s "$PORT" -C 2 -P 2 -B $((512 * MiB)) -R $((512 * MiB))
	for _ in $(seq 100); do
		(($(ip netns exec "$NS" ss -Htn state established "( dport = :$PORT )" | wc -l) == 2)) && break
		sleep 0.05
	done
	load_bypass
	kill -0 "${XPID[s]}"		# loaded mid-transfer
	touch "$TMP/go"
	xfer_finish s r
	echo "2 x 512 MiB each way in $(elapsed "$t") s"
	grep -q "bytes_in=$((1024 * MiB)) bytes_out=$((1024 * MiB))" "$TMP/r.out"
	(($(counter sockets_inserted) == 0))
}

# tcp_mem_mib: TCP memory in use by all sockets of the host, in MiB.
tcp_mem_mib() {
	awk '/^TCP:/ { print int($NF * 4096 / 1048576) }' /proc/net/sockstat
}

# slow_reader: a receiver that stops reading after its first MiB, and a
# sender of 256 MiB.  Once the sender is held back (what it got rid of, by
# the bypass or by TCP, stayed the same for a second), the reader goes on.
# Sets taken (bytes the sender got rid of meanwhile) and mem0/mem1 (TCP
# memory before and then).
slow_reader() {
	local now

	mem0=$(tcp_mem_mib)
	recv_in r "$PORT" -Z "$TMP/go"
	send_in s "$PORT" -B $((256 * MiB)) -R 0
	taken=0
	for _ in $(seq 60); do
		sleep 1
		now=$(($(counter bytes_redirected) + $(counter bytes_passed)))
		((now > 0 && now == taken)) && break
		taken=$now
	done
	mem1=$(tcp_mem_mib)
	touch "$TMP/go"
	echo "while the reader slept: the sender got rid of $((taken / MiB)) MiB;" \
		"TCP memory $mem0 -> $mem1 MiB (all sockets of the host)"
}

@test "slow reader: nothing is lost, the sender sees no error, memory is given back" {
	local taken mem0 mem1

	load_bypass
	slow_reader
	xfer_finish s r
	grep -q "bytes_in=$((256 * MiB))" "$TMP/r.out"
	# Once the reader has caught up, the queued memory is freed.
	for _ in $(seq 50); do
		(($(tcp_mem_mib) <= mem0 + 8)) && break
		sleep 0.1
	done
	echo "TCP memory after: $(tcp_mem_mib) MiB"
	(($(tcp_mem_mib) <= mem0 + 8))
}

# TCP lets at most the receive buffer plus the send buffer be in flight,
# then the sender blocks.  The bypass has no receive buffer: bpf_tcp_ingress()
# queues whatever comes, against the host's tcp_mem only.  bpf_redir holds
# the sender to --max-queue instead: past it, the connection goes by TCP,
# whose buffers then fill and block the sender (memory.bats measures the
# bound itself).
@test "slow reader: the sender is held back at the queue bound plus TCP's buffers, as with TCP" {
	local taken mem0 mem1 rmem wmem bound

	load_bypass
	slow_reader
	xfer_finish s r
	read -r _ _ rmem </proc/sys/net/ipv4/tcp_rmem
	read -r _ _ wmem </proc/sys/net/ipv4/tcp_wmem
	bound=$(($("$TOP/status.sh" --json | jq .config.max_queue) + rmem + wmem))
	echo "bound: $((bound / MiB)) MiB (queue bound, tcp_rmem and tcp_wmem max)"
	((taken <= MiB + bound))
	# Once at least; again after each time it comes back and the reader
	# lags again.
	(($(counter fallback_queue) >= 1))
}
