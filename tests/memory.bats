#!/usr/bin/env bats
# SPDX-License-Identifier: GPL-2.0
#
# Bounded memory: a receiver that stops reading must hold its sender back,
# as with TCP.  tests/probes/noread connects a socket to itself, never reads the
# accepted end, writes non-blocking until the kernel says EAGAIN, reports
# what the sender got rid of and how the host's memory grew, then reads it
# all back and checks every byte.
#
# Plain TCP says EAGAIN after a few MiB (the receive and send buffers).  The
# bypass queues on the receiver with no such limit (bpf_tcp_ingress() checks
# only the host's tcp_mem), so bpf_redir bounds what the receiver holds
# unread (--max-queue) and what TCP holds on the whole host (--max-tcp-mem),
# and sends the connection by TCP when either is reached, until the reader
# has read everything (which these readers never do).  A reader that fixed
# its receive buffer (SO_RCVBUF) caps that bound at it, as TCP would hold
# it (noread -b, -B).

BASE_PORT=46000
load helpers

MiB=1048576
PAGE=$(getconf PAGESIZE)
CONNHOLD=$TOP/bench/connhold

# noread ARGS...: tests/probes/noread in the test cgroup; its report line is in
# $out, and the fields used below in $accepted, $stop, $slab_kib, $intact.
noread() {
	out=$(in_cg "$NOREAD" -p "$PORT" "$@")
	echo "$out"
	accepted=$(field accepted)
	stop=$(field stop)
	slab_kib=$(field slab_kib)
	intact=$(field intact)
}

# field NAME: the value of NAME=... in $out.
field() {
	sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$out"
}

# max_queue, queue_start: the bound load.sh chose, in bytes: where it
# grows to, and where each connection starts.
max_queue() {
	bpftool -j map dump pinned "$SOCKOPS_PIN_DIR/$PIN_CONFIG" |
		jq '.[0].formatted.value.max_queue'
}

queue_start() {
	bpftool -j map dump pinned "$SOCKOPS_PIN_DIR/$PIN_CONFIG" |
		jq '.[0].formatted.value.queue_start'
}

@test "64 KiB writes to a reader that never reads: held at the queue bound, then TCP says EAGAIN, within three times what plain TCP takes; every byte arrives" {
	local plain total

	# Plain TCP first, the reference: it says EAGAIN once the receive
	# window and the send buffer are full (4 MiB here).
	noread -l 65536 -c $((256 * MiB))
	[[ $stop == eagain && $intact == 1 ]]
	plain=$accepted
	load_bypass
	# The issue's cap: 6 GiB.  Without the bound, the sender queued until
	# the host ran out of TCP memory and send() failed with ENOMEM.
	noread -l 65536 -c $((6 * 1024 * MiB))
	[[ $stop == eagain && $intact == 1 ]]
	echo "plain TCP took $plain bytes, the bypass $accepted: $((accepted * 100 / plain))%"
	# The default bound starts at tcp_wmem[2], and a reader that never
	# reads never makes it grow: the whole stays within three times what
	# TCP took (the bound, then TCP's own buffers; about twice here).
	((accepted <= 3 * plain))
	# Past the bound only what plain TCP holds.
	((accepted - $(counter bytes_redirected) <= plain + 64 * 1024))
	# It got past the bound only by TCP: one fallback, for the queue, and
	# no way back, since the reader never read.
	((accepted > $(queue_start)))
	(($(counter fallback_queue) == 1 && $(counter return_queue) == 0))
	(($(counter fallback_tcp_mem) + $(counter fallback_backlog) + $(counter fallback_no_peer) == 0))
	# The connection holds its share of the host's backlog until it
	# closes (noread has exited): then it is all given back.
	(($(backlog_bytes) == 0))
	(($(counter bytes_redirected) <= $(queue_start)))
	# The program sees each write whole; the last one was taken in part
	# when TCP's buffers filled (EAGAIN).
	total=$(($(counter bytes_redirected) + $(counter bytes_passed)))
	((total >= accepted && total < accepted + 65536))
}

# rcvbuf_noread FLAG: a reader with SO_RCVBUF 64 KiB (FLAG -b: set after
# the handshake; -B: on the listener, inherited) that never reads, plain
# TCP then with the bypass: what it holds unread (rx_rmem) stays within
# three times TCP's, far below the bypass's own bound; every byte arrives.
rcvbuf_noread() {
	local plain_rmem plain

	noread -l 65536 -c $((256 * MiB)) "$1" 65536
	[[ $stop == eagain && $intact == 1 ]]
	plain_rmem=$(field rx_rmem) plain=$accepted
	load_bypass
	PORT=$((PORT + 1))
	noread -l 65536 -c $((256 * MiB)) "$1" 65536
	[[ $stop == eagain && $intact == 1 ]]
	# The kernel doubles what was asked.
	(($(field rcvbuf) == 2 * 65536))
	echo "reader held: plain TCP $plain_rmem bytes (sender got rid of $plain)," \
	     "the bypass $(field rx_rmem) (of $accepted); bound $(queue_start)"
	(($(field rx_rmem) <= 3 * plain_rmem))
	# Without the cap it held the whole bound (4 MiB by default), 32
	# times its buffer.
	(($(field rx_rmem) <= 2 * $(field rcvbuf)))
	(($(field rx_rmem) < $(queue_start)))
	# The bypass took at most the buffer's worth, then TCP the rest.
	(($(counter bytes_redirected) <= 2 * 65536))
	(($(counter bytes_passed) > 0))
	(($(counter fallback_queue) == 1 && $(counter return_queue) == 0))
	(($(counter fallback_tcp_mem) + $(counter fallback_backlog) == 0))
}

@test "a reader that sets SO_RCVBUF 64 KiB after the handshake and never reads holds about what TCP lets it hold, not the bypass's bound; every byte arrives" {
	rcvbuf_noread -b
}

@test "SO_RCVBUF set on the listener holds its accepted reader the same way" {
	rcvbuf_noread -B
}

@test "SO_RCVBUF does nothing with --max-queue 0: no bound, no cap" {
	load_bypass --max-queue 0
	noread -l 65536 -c $((16 * MiB)) -b 65536
	[[ $stop == cap && $intact == 1 ]]
	(($(counter bytes_redirected) == 16 * MiB))
	(($(counter fallback_queue) == 0))
}

@test "a reader that has read earns a larger bound, as TCP's receive buffer grows, up to its ceiling; then it stalls, and every byte arrives" {
	local start max first plain

	# Plain TCP first, for the record: its receive buffer has grown too.
	noread -l 65536 -r $((128 * MiB)) -c $((6 * 1024 * MiB))
	[[ $stop == eagain && $intact == 1 ]]
	plain=$((accepted - $(field read_first)))
	load_bypass
	start=$(queue_start) max=$(max_queue)
	echo "bound: from $start to $max"
	((start < max))
	# It reads 4 times the ceiling, then stops reading.
	noread -l 65536 -r $((4 * max)) -c $((6 * 1024 * MiB))
	[[ $stop == eagain && $intact == 1 ]]
	first=$(field read_first)
	# What it left unread by the bypass: more than it would have been
	# allowed at the start, at most the ceiling.
	queued=$(($(counter bytes_redirected) - first))
	echo "read first $first, then $queued left unread by the bypass," \
	     "$((accepted - first)) in all; plain TCP: $plain"
	((queued > start && queued <= max))
	(($(counter fallback_queue) == 1 && $(counter return_queue) == 0))
}

@test "2,000,000 one-byte writes to a reader that never reads grow unreclaimable slab by at most 256 MiB" {
	load_bypass
	# Each queued message costs a kmalloc-1k struct sk_msg besides its
	# byte: unbounded, these writes pinned 1.95 GiB of slab.
	noread -l 1 -n 2000000
	[[ $intact == 1 ]]
	# After the fallback, TCP takes them all (6.18 coalesces them in its
	# send queue) or says EAGAIN once its send buffer is full (6.1).
	[[ $stop == writes || $stop == eagain ]]
	((slab_kib <= 256 * 1024))
	(($(counter fallback_queue) == 1))
	# The bound counts 1 KiB per message: the fallback came after at most
	# max_queue / 1025 one-byte messages.
	(($(counter msgs_redirected) <= $(max_queue) / 1025 + 1))
	(($(counter msgs_redirected) + $(counter msgs_passed) >= accepted))
}

@test "the host guard: once TCP memory reaches --max-tcp-mem, connections go by TCP" {
	local pages limit

	# Whatever TCP holds now, plus 16 MiB; no per-connection bound, so
	# only the guard can stop the queue.
	pages=$(awk '/^TCP:/ { print $NF }' /proc/net/sockstat)
	limit=$((pages * $(getconf PAGESIZE) + 16 * MiB))
	load_bypass --max-queue 0 --max-tcp-mem "$limit"
	noread -l 65536 -c $((1024 * MiB))
	[[ $stop == eagain && $intact == 1 ]]
	# The guard's two sums see the same bytes: TCP's memory (which lags
	# by its per-CPU reserves) or the bypass's backlog gets there first.
	(($(counter fallback_tcp_mem) + $(counter fallback_backlog) == 1))
	(($(counter fallback_queue) == 0))
	# Other sockets of the host come and go meanwhile: allow 64 MiB.
	((accepted <= 16 * MiB + 64 * MiB))
}

# TCP memory pressure.  __sk_mem_raise_allocated() sets it when TCP's
# memory passes tcp_mem[1] and clears it only below tcp_mem[0]; meanwhile it
# refuses a receiver more than tcp_mem[2] / (TCP sockets of the host), and
# bpf_tcp_ingress() turns that into ENOMEM for the sender, which TCP never
# gives.  These tests bring it about with 400 idle connections (800 sockets:
# a share of 2.8 MiB here) and tcp_mem's first two marks lowered to just
# above what TCP holds now; the hard mark stays, and teardown puts all three
# back.

teardown() {
	[[ -z ${TCP_MEM_SAVED:-} ]] || echo "$TCP_MEM_SAVED" >/proc/sys/net/ipv4/tcp_mem
	common_teardown
}

# tcp_mem_lower LOW PRESSURE: tcp_mem[0] and [1] at LOW and PRESSURE MiB
# above TCP's memory now.
tcp_mem_lower() {
	local pages max

	TCP_MEM_SAVED=${TCP_MEM_SAVED:-$(cat /proc/sys/net/ipv4/tcp_mem)}
	read -r _ _ max <<<"$TCP_MEM_SAVED"
	pages=$(awk '/^TCP:/ { print $NF }' /proc/net/sockstat)
	echo "$((pages + $1 * MiB / PAGE)) $((pages + $2 * MiB / PAGE)) $max" \
		>/proc/sys/net/ipv4/tcp_mem
}

# tcp_pressure: "yes" while TCP is under memory pressure, else "no".
tcp_pressure() {
	awk '$1 == "TCP" { print $5 }' /proc/net/protocols
}

# hold_sockets: 400 idle connections in the test cgroup until teardown, in
# a network namespace of their own, so that their 800 ephemeral ports cannot
# take the tests' ports; TCP's socket count and memory are the host's.
hold_sockets() {
	netns_add "hold$$"
	spawn hold ip netns exec "hold$$" bash -c \
		'exec "$1" hold -n 400 < <(exec sleep 600)' _ "$CONNHOLD"
	for _ in $(seq 100); do
		grep -q '"conns":400' "$TMP/hold.out" && return 0
		sleep 0.1
	done
	cat "$TMP/hold.out"
	return 1
}

@test "past tcp_mem[1] the kernel refuses redirected bytes with ENOMEM; the default host guard, tcp_mem[0], falls back first" {
	[[ -x $CONNHOLD ]] || skip "bench/connhold is not built; run make"
	hold_sockets
	tcp_mem_lower 8 24

	# No guard: the queue passes tcp_mem[1], TCP enters pressure, and the
	# next message the peer cannot take fails the sender's send().
	load_bypass --max-queue 0 --max-tcp-mem 0
	noread -l 65536 -c $((256 * MiB)) || true
	[[ $stop == ENOMEM && $intact == 1 ]]
	unload_bypass
	echo "$TCP_MEM_SAVED" >/proc/sys/net/ipv4/tcp_mem
	tcp_mem_lower 8 24

	# The default guard is tcp_mem[0]: the connection goes by TCP there,
	# and TCP holds the sender back with EAGAIN.
	PORT=$((PORT + 1))
	load_bypass --max-queue 0
	noread -l 65536 -c $((256 * MiB))
	[[ $stop == eagain && $intact == 1 ]]
	(($(counter fallback_tcp_mem) + $(counter fallback_backlog) == 1))
	# 8 MiB, give or take TCP's per-CPU reserves (1 MiB per CPU).
	(($(counter bytes_redirected) <= (8 + 4) * MiB))
}

@test "while TCP is under memory pressure, connections go by TCP whatever --max-tcp-mem says" {
	local go held red0

	[[ -x $CONNHOLD ]] || skip "bench/connhold is not built; run make"
	hold_sockets
	tcp_mem_lower 8 24
	# Without a guard, a reader that never reads takes TCP past
	# tcp_mem[1]: its sender gets ENOMEM.  It keeps what it holds (-w)
	# until the FIFO's last writer, our fd $go, closes, so TCP stays
	# under pressure: a psock's queue is never pruned.
	load_bypass --max-queue 0 --max-tcp-mem 0
	mkfifo "$TMP/go"
	exec {go}<>"$TMP/go"
	cg_exec "$TEST_CG" "$NOREAD" -w -p $((PORT + 5)) -l 65536 -c $((256 * MiB)) \
		<"$TMP/go" {go}>&- >"$TMP/held.out" 2>&1 &
	held=$!
	PIDS+=($held)
	for _ in $(seq 200); do
		grep -q filled "$TMP/held.out" && break
		sleep 0.05
	done
	echo "tcp_mem $(cat /proc/sys/net/ipv4/tcp_mem); $(grep '^TCP:' /proc/net/sockstat)"
	[[ $(tcp_pressure) == yes ]]
	[[ $("$TOP/status.sh" --json | jq .tcp_pressure) == true ]]
	[[ $("$TOP/status.sh") == *"(under memory pressure: connections go by TCP)"* ]]

	# A guard far above what TCP holds: only the pressure can send it by TCP.
	load_bypass --max-queue 0 --max-tcp-mem 64G
	red0=$(counter bytes_redirected)
	noread -l 65536 -c $((256 * MiB))
	exec {go}>&-
	wait "$held" || true
	cat "$TMP/held.out"
	grep -q "stop=ENOMEM .* intact=1" "$TMP/held.out"
	[[ $stop == eagain && $intact == 1 ]]
	(($(counter fallback_tcp_mem) == 1))
	(($(counter bytes_redirected) == red0))
}

# backlog_bytes: the host's backlog now, as status.sh shows it.
backlog_bytes() {
	"$TOP/status.sh" --json | jq .backlog_now
}

@test "many connections of small writes, each under --max-queue, are held together by the host guard; the backlog empties when they close" {
	local pages limit i go n=16 port=$((BASE_PORT + 500)) pids=()

	# A host limit 32 MiB above what TCP holds now, so that the payload
	# (2 MiB in all) never reaches it; each connection may queue 8 MiB of
	# backlog: 16 connections would pin 128 MiB.
	pages=$(awk '/^TCP:/ { print $NF }' /proc/net/sockstat)
	limit=$((pages * $(getconf PAGESIZE) + 32 * MiB))
	load_bypass --max-queue 8M --max-tcp-mem "$limit"
	# 16-byte writes: 8 MiB of backlog is 128 KB of payload, which
	# tcp_mem hardly sees; only the backlog's 1 KiB per message does.
	# Each instance holds its queue full until the FIFO's last writer, our
	# fd $go, closes.
	mkfifo "$TMP/go"
	exec {go}<>"$TMP/go"
	for ((i = 0; i < n; i++)); do
		cg_exec "$TEST_CG" "$NOREAD" -w -p $((port + i)) -l 16 -n 20000 \
			<"$TMP/go" {go}>&- >"$TMP/noread-$i.out" 2>&1 &
		pids+=($!)
		PIDS+=($!)
	done
	for i in "${!pids[@]}"; do
		for _ in $(seq 600); do
			grep -q filled "$TMP/noread-$i.out" && break
			kill -0 "${pids[i]}" 2>/dev/null || break
			sleep 0.1
		done
		grep -q filled "$TMP/noread-$i.out" || { cat "$TMP/noread-$i.out"; return 1; }
	done
	echo "all full: backlog $(($(backlog_bytes) / MiB)) MiB; fell back:" \
		"queue=$(counter fallback_queue) backlog=$(counter fallback_backlog)" \
		"tcp_mem=$(counter fallback_tcp_mem)"
	# Every connection fell back once: by its own bound, or by the
	# host's once the others had filled it; together they hold no more
	# than the limit (and one connection's bound, the last to charge).
	(($(counter fallback_queue) + $(counter fallback_backlog) == n))
	(($(counter fallback_backlog) >= 1))
	(($(counter fallback_tcp_mem) == 0))
	(($(backlog_bytes) <= limit + 8 * MiB))

	exec {go}>&-
	for i in "${!pids[@]}"; do
		wait "${pids[i]}" || { cat "$TMP/noread-$i.out"; return 1; }
		grep -q "accepted=320000 .* intact=1" "$TMP/noread-$i.out"
	done
	# Every socket closed: each gave its share back.
	(($(backlog_bytes) == 0))
}

@test "without the bounds a reader that never reads lets its sender queue far beyond TCP: why they exist" {
	local cap

	load_bypass --max-queue 0 --max-tcp-mem 0
	# 256 MiB, or half of tcp_mem's low mark on a small host: past its
	# hard mark, an unbounded sender would get ENOMEM.
	cap=$(($(tcp_mem 0) * $(getconf PAGESIZE) / 2))
	((cap > 256 * MiB)) && cap=$((256 * MiB))
	noread -l 65536 -c "$cap"
	[[ $stop == cap && $intact == 1 ]]
	((accepted == cap && cap > 32 * MiB))
	(($(counter bytes_redirected) == cap))
	(($(counter fallback_queue) + $(counter fallback_tcp_mem) == 0))
}

@test "plain TCP holds the same writer back after a few MiB: the reference" {
	noread -l 65536 -c $((256 * MiB))
	[[ $stop == eagain && $intact == 1 ]]
	((accepted < 64 * MiB))
}

@test "the bounds are shown by status.sh and change in place when load.sh runs again" {
	load_bypass --max-queue 8M --max-tcp-mem 1G
	run "$TOP/status.sh" --json
	echo "$output"
	[[ $(jq .config.max_queue <<<"$output") == $((8 * MiB)) ]]
	[[ $(jq .config.max_tcp_mem <<<"$output") == $((1024 * MiB)) ]]
	run "$TOP/status.sh"
	[[ $output == *"queue:     8 MiB per connection"* ]]
	[[ $output == *"host:      1 GiB of TCP memory"* ]]
	# 1500 MiB is 1.46 GiB: both scripts round it to 1.5 GiB.
	run load_bypass --max-tcp-mem 1500M
	[[ $status -eq 0 && $output == *"1.5 GiB of TCP memory"* ]]
	run "$TOP/status.sh"
	[[ $output == *"host:      1.5 GiB of TCP memory"* ]]

	# Same cgroup, new bound: applied to the loaded instance, live.
	run load_bypass --max-queue 4M
	[[ $status -eq 0 && $output == *"already loaded"*"queue bound: 4 MiB"* ]]
	(($(max_queue) == 4 * MiB))
	noread -l 65536 -c $((256 * MiB))
	(($(counter fallback_queue) == 1))
	(($(counter bytes_redirected) <= 4 * MiB))
}

@test "a bad size is refused with usage, and nothing is loaded" {
	run load_bypass --max-queue 12X
	[[ $status -eq 2 && $output == *"--max-queue: not a size: 12X"* ]]
	[[ ! -e $SOCKOPS_PIN_DIR ]]
}
