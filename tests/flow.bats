#!/usr/bin/env bats
# SPDX-License-Identifier: GPL-2.0
#
# Flow control: the bypass and TCP are two paths of one connection.  When a
# reader falls --max-queue behind, its writer's messages go by TCP, whose
# buffers hold the writer back; once the reader has read every byte, they
# go by the bypass again.  Each test streams for seconds with
# tests/probes/flow, which checks every byte where it lands and reports a
# reader that makes no progress ("stalled", exit 3): a test never hangs.
#
# A writer faster than its reader keeps the TCP path full and stays on it:
# that is TCP's flow control doing its work.  So the writers here are paced
# (-R 5: 5 MB/s) below what their readers read when they read, on any host,
# an emulated guest's too (one reads about 18 MB/s there, checking every
# byte), and the bound is small (--max-queue 256K), so that a pause of 200
# ms (1 MB) crosses it every time.  Full speed is bench/compare.sh's job.

BASE_PORT=31000
load helpers

FLOW=$TOP/tests/probes/flow

# flow_run NAME RECV_ARGS -- SEND_ARGS: a receiver and a sender in the test
# cgroup; wait for both (at most 120 s: the watchdog stops a stalled
# reader long before); fail unless both say ok=1.
flow_run() {
	local name=$1 recv=() rc

	shift
	while (($#)) && [[ $1 != -- ]]; do
		recv+=("$1")
		shift
	done
	shift
	spawn "$name-recv" timeout 120 "$FLOW" recv -p "$PORT" "${recv[@]}"
	wait_port "$PORT"
	rc=0
	in_cg timeout 120 "$FLOW" send -p "$PORT" "$@" >"$TMP/$name-send.out" 2>&1 || rc=$?
	wait "$LAST_PID" || rc=$?
	grep -v '^flow: t=' "$TMP/$name-recv.out" || true
	cat "$TMP/$name-send.out"
	((rc == 0))
	grep -q 'ok=1$' "$TMP/$name-send.out"
	grep -q '^flow recv: .* ok=1$' "$TMP/$name-recv.out"
}

# result NAME END FIELD: FIELD=... of the last line of NAME's END (recv, send).
result() {
	sed -n "s/^flow $2:.* $3=\\([0-9]*\\).*/\\1/p" "$TMP/$1-$2.out"
}

# paths: the path counters, for the log.
paths() {
	echo "fallback_queue=$(counter fallback_queue) return_queue=$(counter return_queue)" \
	     "redirected=$(counter bytes_redirected) passed=$(counter bytes_passed)" \
	     "closed_on_tcp=$(counter closed_on_tcp)"
}

# first_return_snapshot: in the background, wait for the first return to
# the bypass and write the byte counters at that moment to $TMP/first.
first_return_snapshot() {
	(
		for _ in $(seq 600); do
			if (($(counter return_queue) > 0)); then
				echo "$(counter bytes_redirected) $(counter bytes_passed)" >"$TMP/first"
				exit 0
			fi
			sleep 0.1
		done
	) &
	PIDS+=($!)
	SNAP_PID=$!
}

@test "a reader that pauses 200 ms in every 500: its writer falls back to TCP and comes back, again and again; most bytes after the first return go by the bypass" {
	local r0 p0 r1 p1 total

	load_bypass --quiet --max-queue 256K
	first_return_snapshot
	flow_run pause -r plain -z 300:200 -- -t 8 -l 65536 -R 5 -s 1
	wait "$SNAP_PID"
	paths
	read -r r0 p0 <"$TMP/first"
	r1=$(counter bytes_redirected)
	p1=$(counter bytes_passed)
	echo "after the first return: redirected $((r1 - r0)), by TCP $((p1 - p0))"
	(($(counter fallback_queue) >= 3 && $(counter return_queue) >= 3))
	((r1 - r0 > p1 - p0))
	# The counters agree with what the reader saw come by TCP, to the
	# byte; every byte sent (and the 28-byte header) went one way or the
	# other.
	total=$(($(result pause send bytes_out) + 28))
	(($(counter bytes_passed) == $(result pause recv tcp_in)))
	(($(counter bytes_redirected) + $(counter bytes_passed) == total))
	# Closed: no connection is on TCP any more.
	(($(counter fallback_queue) - $(counter return_queue) == $(counter closed_on_tcp)))
}

@test "writes of 1 byte to 256 KiB, both ways at once, both readers pausing: both directions fall back and come back, every byte in order" {
	load_bypass --quiet --max-queue 256K
	flow_run mixed -r plain -z 300:200 -- -t 8 -l 1:262144 -R 5 -x -z 300:200 -s 2
	paths
	(($(counter fallback_queue) >= 6 && $(counter return_queue) >= 6))
	# Each direction went by both paths.
	(($(result mixed recv tcp_in) > 0 && $(result mixed recv tcp_in) < $(result mixed recv bytes_in)))
	(($(result mixed send tcp_in) > 0 && $(result mixed send tcp_in) < $(result mixed send bytes_in)))
	(($(counter bytes_passed) == $(result mixed recv tcp_in) + $(result mixed send tcp_in)))
}

@test "a MSG_WAITALL reader, asleep in tcp_recvmsg() for the rest of its count at every return: never left asleep, every byte in order" {
	load_bypass --quiet --max-queue 256K
	# Counts that no write size divides: at most drain points the reader
	# is inside tcp_recvmsg() for the rest, and the connection must not
	# come back then.
	flow_run waitall -r waitall -z 300:200 -- -t 6 -l 1:262144 -R 5 -s 3
	paths
	(($(counter fallback_queue) >= 1))
	(($(counter bytes_passed) == $(result waitall recv tcp_in)))
}

@test "a MSG_WAITALL reader whose counts match the writes: the connection comes back between its calls, every byte in order" {
	load_bypass --quiet --max-queue 256K
	flow_run waitall64 -r waitall -w 65536 -z 300:200 -- -t 6 -l 65536 -R 5 -s 4
	paths
	(($(counter fallback_queue) >= 3 && $(counter return_queue) >= 2))
	(($(counter bytes_passed) == $(result waitall64 recv tcp_in)))
}

@test "an SO_RCVLOWAT set after the handshake: its writer goes by TCP from its next send, for good, and TCP honours the mark; every byte in order" {
	load_bypass --quiet --max-queue 256K
	flow_run lowat -r lowat -z 300:200 -- -t 6 -l 1:262144 -R 5 -s 5
	paths
	echo "fallback_option=$(counter fallback_option)"
	# The bypass cannot honour a low-water mark (docs/semantics.md):
	# bpf_sockopt sees the mark, and the writer's next send goes by TCP
	# (tests/options.bats has the counters in detail).  Only the header,
	# sent before, was redirected.
	(($(counter fallback_option) == 1))
	(($(counter fallback_queue) == 0 && $(counter return_queue) == 0))
	(($(counter bytes_passed) == $(result lowat recv tcp_in)))
	(($(counter bytes_passed) > 0))
}

@test "a reader with SO_RCVBUF 256 KiB that keeps up: its writer stays on the bypass, every byte in order" {
	load_bypass --quiet
	# The default bound (4 MiB here) capped at the reader's buffer, 512
	# KiB (twice what it asked): a reader that keeps up never holds that.
	flow_run rcvbuf -r plain -B 262144 -- -t 4 -l 65536 -R 20 -s 7
	paths
	(($(counter bytes_redirected) > $(counter bytes_passed)))
	(($(counter bytes_passed) == $(result rcvbuf recv tcp_in)))
	(($(counter fallback_tcp_mem) + $(counter fallback_backlog) == 0))
}

@test "a reader with SO_RCVBUF 128 KiB that pauses 200 ms in every 500: its writer falls back at the buffer, far under the default bound, and comes back; every byte in order" {
	load_bypass --quiet
	# A 200 ms pause at 5 MB/s leaves 1 MB unread: under the default
	# bound (4 MiB), over the buffer (256 KiB).  Only the cap falls back,
	# and the way back's quarter is of the capped bound.
	flow_run rcvbuf_pause -r plain -B 131072 -z 300:200 -- -t 6 -l 65536 -R 5 -s 8
	paths
	(($(counter fallback_queue) >= 3 && $(counter return_queue) >= 3))
	(($(counter bytes_passed) == $(result rcvbuf_pause recv tcp_in)))
	(($(counter bytes_redirected) > 0))
}

@test "two threads blocked in recv() on one socket: the connection never comes back once it falls back; every byte arrives once, each thread's in order" {
	load_bypass --quiet --max-queue 256K
	flow_run threads -r threads -z 300:200 -- -t 6 -l 1:262144 -R 5 -s 6
	paths
	(($(counter fallback_queue) >= 1))
	(($(counter return_queue) == 0))
	(($(counter bytes_passed) == $(result threads recv tcp_in)))
}

@test "status.sh counts the connections on TCP now: one while its reader does not read, none once it has read and closed" {
	local json

	load_bypass --quiet --max-queue 256K
	# noread -w: fills its connection until EAGAIN, says "filled", then
	# waits for its stdin to end before it reads everything back.
	mkfifo "$TMP/go"
	spawn noread bash -c 'exec "$1" -p "$2" -w <"$3"' _ "$NOREAD" "$PORT" "$TMP/go"
	exec 9>"$TMP/go"
	for _ in $(seq 200); do
		grep -q 'noread: filled' "$TMP/noread.out" && break
		sleep 0.05
	done
	json=$("$TOP/status.sh" --json)
	echo "filled: on_tcp=$(jq .on_tcp <<<"$json") $(paths)"
	(($(jq .on_tcp <<<"$json") == 1))
	"$TOP/status.sh" | grep -x 'on TCP:    1 connection direction now (fell back 1 times, came back 0)'
	exec 9>&-
	wait "$LAST_PID"
	cat "$TMP/noread.out"
	grep -q 'intact=1' "$TMP/noread.out"
	json=$("$TOP/status.sh" --json)
	echo "closed: on_tcp=$(jq .on_tcp <<<"$json") $(paths)"
	(($(jq .on_tcp <<<"$json") == 0))
	(($(counter closed_on_tcp) == 1))
}
