#!/usr/bin/env bats
# SPDX-License-Identifier: GPL-2.0
#
# The benchmark's harness, bench/sockbench, on the bypass: what bench.sh
# relies on.  Its figures are only comparable if every run through the bypass
# really was redirected and every byte arrived intact, so these tests check
# the bytes it reports against the bypass's counters and the sockhash.
# No timing is asserted.  (The whole benchmark runs as "make bench QUICK=1".)

load helpers

SOCKBENCH=$TOP/bench/sockbench

# sockbench ARGS...: one run in the test cgroup; its JSON goes to
# $TMP/run.json and the test fails if it reports an error (a byte that
# differs from the pattern, a short stream, a failed call).  Port 0: the
# kernel picks a free one, so no other job's socket can be in the way.
sockbench() {
	in_cg "$SOCKBENCH" "$@" -p 0 >"$TMP/run.json"
	cat "$TMP/run.json"
}

field() {
	jq -r ".$1" "$TMP/run.json"
}

@test "stream through the bypass: every byte checked, redirected or counted as sent by TCP after a fallback" {
	[[ -x $SOCKBENCH ]] || skip "bench/sockbench is not built; run make"
	load_bypass --quiet
	sockbench stream -s 1024 -t 0.3
	bytes=$(field bytes)
	echo "bytes=$bytes redirected=$(counter bytes_redirected) passed=$(counter bytes_passed)"
	((bytes > 0))
	# The client sends the whole stream; a reader that falls its queue
	# bound behind has a stretch sent by TCP (expect_split allows it).
	expect_split "$bytes" "$bytes"
	# One send() is one sk_msg run: the harness counts what the kernel sees.
	(($(counter msgs_redirected) + $(counter msgs_passed) == $(field writes)))
}

@test "ping-pong through the bypass: both directions redirected, replies checked" {
	[[ -x $SOCKBENCH ]] || skip "bench/sockbench is not built; run make"
	load_bypass --quiet
	sockbench pingpong -s 64 -t 0.3
	trips=$(field round_trips)
	((trips > 0))
	# Requests and echoes: 64 bytes each way per round trip.
	(($(field bytes) == trips * 2 * 64))
	# The client sends the requests: half of the bytes.
	expect_split "$(field bytes)" $((trips * 64))
	(($(counter msgs_redirected) + $(counter msgs_passed) == trips * 2))
}

@test "connection setup with sock_ops: both ends inserted, all gone after close" {
	[[ -x $SOCKBENCH ]] || skip "bench/sockbench is not built; run make"
	load_bypass --quiet
	sockbench connect -t 0.3
	conns=$(field conns)
	((conns > 0))
	(($(counter sockets_inserted) == 2 * conns))
	(($(counter insert_failed) == 0))
	# Closed sockets leave the sockhash (sock_map_close unlinks them).
	(($(map_entries) == 0))
}

@test "connection setup from 4 clients at once: both ends inserted, all gone after close" {
	[[ -x $SOCKBENCH ]] || skip "bench/sockbench is not built; run make"
	load_bypass --quiet
	sockbench connect -P 4 -t 0.3
	conns=$(field conns)
	(($(field clients) == 4 && conns > 0))
	(($(counter sockets_inserted) == 2 * conns))
	(($(counter sockets_removed) == 2 * conns))
	(($(counter insert_failed) == 0))
	(($(map_entries) == 0))
}

@test "short RPCs through the bypass, 4 clients at once: every request and reply checked, every socket counted out" {
	[[ -x $SOCKBENCH ]] || skip "bench/sockbench is not built; run make"
	load_bypass --quiet
	# Two 64-byte requests per connection, each echoed.
	sockbench rpc -P 4 -R 2 -t 0.3
	conns=$(field conns)
	(($(field clients) == 4 && $(field requests) == 2 && conns > 0))
	(($(field bytes) == conns * 2 * 2 * 64))
	# A time to first byte for each connection.
	jq -e '.ttfb_p50_us > 0 and .ttfb_p99_us >= .ttfb_p50_us' "$TMP/run.json"
	# The clients send the requests: half of the bytes.
	expect_split "$(field bytes)" $((2 * 64))
	(($(counter msgs_redirected) + $(counter msgs_passed) == conns * 2 * 2))
	(($(counter sockets_inserted) == 2 * conns))
	(($(counter sockets_removed) == 2 * conns))
	(($(map_entries) == 0))
}

@test "Unix and plain TCP runs of the harness never touch the bypass" {
	[[ -x $SOCKBENCH ]] || skip "bench/sockbench is not built; run make"
	load_bypass --quiet
	# In our cgroup, but not TCP: the sock_ops program never sees it.
	sockbench stream -u -s 4096 -t 0.2
	(($(field bytes) > 0))
	sockbench rpc -u -P 2 -t 0.2
	(($(field conns) > 0))
	# TCP, but outside the cgroup: this shell's cgroup has no bypass.
	"$SOCKBENCH" stream -s 4096 -t 0.2 -p 0 >"$TMP/run.json"
	(($(field bytes) > 0))
	(($(counter sockets_inserted) == 0))
	(($(counter msgs_redirected) == 0))
}
