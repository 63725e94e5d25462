#!/usr/bin/env bats
# SPDX-License-Identifier: GPL-2.0
#
# The core bypass, end to end: the seed's flow with real iperf3, tcpdump and
# checksummed transfers.  Every test loads the real programs into its own
# cgroup and pin directory, except the one that checks the default (root
# cgroup) attachment.

BASE_PORT=20000
load helpers

# iperf_client ARGS...: run an iperf3 client in the test cgroup, JSON into
# $TMP/iperf.json; prints the bytes the receiver got.
iperf_client() {
	in_cg iperf3 -J "$@" >"$TMP/iperf.json"
	jq '.end.sum_received.bytes' "$TMP/iperf.json"
}

# iperf_redirected CLIENT_ADDR [SERVER_ARGS...]: the seed's iperf3 run
# through the bypass.  Every byte the client sent went socket to socket, and
# lo saw no data segment: only the two connections' (control and data)
# handshakes and teardowns.
iperf_redirected() {
	local addr=$1 got sent redirected data

	shift
	load_bypass
	iperf_server "$PORT" "$@"
	lo_capture_start "$PORT"
	# At most 12 MB in 2 s, below the smallest queue bound load.sh chooses
	# (16 MiB): even a reader that falls behind cannot send the connection
	# to TCP (see memory.bats).
	got=$(iperf_client -c "$addr" -p "$PORT" -t 2 -b 48M -l 64k)
	lo_capture_stop
	sent=$(jq '.end.sum_sent.bytes' "$TMP/iperf.json")
	redirected=$(counter bytes_redirected)
	data=$(lo_data_packets)
	echo "sent=$sent got=$got redirected=$redirected lo_packets=$(lo_packets) lo_data=$data"
	# iperf3's server stops reading when the client says the test is
	# over, which can be before the last redirected bytes are read: the
	# counters and tests/probes/xfer account for every byte.
	((got > 0 && got <= sent))
	(($(lo_syn_packets) == 4))
	(($(counter sockets_inserted) == 4))
	if (($(counter fallback_no_peer) > 0)); then
		# A connection raced (helpers.bash): its client's bytes went
		# by TCP, on lo.
		echo "raced: $(counter fallback_no_peer) connection(s)"
		((redirected + $(counter bytes_passed) >= sent))
		return
	fi
	((redirected >= sent))
	((data == 0))
	# 3 + 4 packets per connection, some ACKs of FINs coalesced; a slow
	# (emulated) guest may add a pure ACK, such as a window update.
	(($(lo_packets) <= 16))
	(($(counter msgs_passed) == 0))
}

@test "v4 client to dual-stack iperf3 server is redirected: lo sees only handshakes, bytes arrive" {
	iperf_redirected 127.0.0.1		# the server listens on ::, as iperf3 -s does
}

@test "v4 client to AF_INET-only server is redirected" {
	iperf_redirected 127.0.0.1 -B 127.0.0.1
}

@test "::1 client to IPv6 server is redirected" {
	iperf_redirected ::1 -B ::1
}

@test "trace_lo_traffic.sh shows only the handshakes and teardowns of a bypassed connection" {
	load_bypass
	iperf_server "$PORT" -B 127.0.0.1
	spawn lo-trace "$TOP/trace_lo_traffic.sh" "$PORT"
	for _ in $(seq 100); do
		grep -q "listening on lo" "$TMP/lo-trace.out" && break
		sleep 0.05
	done
	# 6 MB, below any queue bound: no byte may go by TCP (as above).
	iperf_client -c 127.0.0.1 -p "$PORT" -t 1 -b 48M -l 64k >/dev/null
	sleep 1
	kill "$LAST_PID"
	wait "$LAST_PID"	# exits 0 on TERM, as on Ctrl-C
	cat "$TMP/lo-trace.out"
	(($(grep -c "IP 127.0.0.1" "$TMP/lo-trace.out") >= 10))
	(($(grep -c "Flags \[S\]" "$TMP/lo-trace.out") == 2))
	(($(grep -c "Flags \[F\.\]" "$TMP/lo-trace.out") == 4))
	! grep "IP 127.0.0.1" "$TMP/lo-trace.out" | grep -vq "length 0$"
}

@test "a 1 GB checksummed transfer through the bypass arrives identical, both ways" {
	local passed fell

	load_bypass
	spawn xfer-recv "$XFER" recv -b :: -p "$PORT"
	wait_port "$PORT"
	run in_cg "$XFER" send -a 127.0.0.1 -p "$PORT" -B 1000000000 -R 100000000
	echo "$output" | tee "$TMP/xfer-send.out"
	[[ $status -eq 0 ]]
	[[ $output == *"ok=1 bad=0 bytes_out=1000000000 bytes_in=100000000"* ]]
	wait "$LAST_PID"
	grep -q "ok=1 bad=0 bytes_in=1000000000 bytes_out=100000000" "$TMP/xfer-recv.out"
	# Every byte and the 24-byte header went socket to socket, unless a
	# reader fell more than its queue bound behind (a busy or small host):
	# then that direction detoured by TCP until its reader caught up, and
	# is counted so, as is a race with the accept (helpers.bash).  What the
	# counters passed is what the two ends saw come by TCP.
	passed=$(counter bytes_passed)
	fell=$(($(fallbacks_for_memory) + $(counter fallback_no_peer)))
	echo "redirected=$(counter bytes_redirected) passed=$passed fell back=$fell" \
		"came back=$(($(counter return_queue) + $(counter return_tcp_mem) + $(counter return_backlog) + $(counter return_no_peer)))" \
		"by TCP: $(tcp_in xfer-send xfer-recv)"
	((passed == $(tcp_in xfer-send xfer-recv)))
	(($(counter bytes_redirected) + passed == 1000000000 + 100000000 + 24))
	(((passed == 0) == (fell == 0)))
}

@test "trace lines show the real client and server ports of a connection" {
	local cport=$((PORT + 1))

	load_bypass
	trace=$(tracefs_dir)
	spawn trace "$TOP/trace_bpf_output.sh"
	iperf_server "$PORT" -B 127.0.0.1
	iperf_client -c 127.0.0.1 -p "$PORT" --cport "$cport" -t 1 >/dev/null
	sleep 0.5
	cat "$TMP/trace.out"
	grep -q "<<< ipv4 op = 4, port $cport --> $PORT\$" "$TMP/trace.out"
	grep -q "<<< ipv4 op = 5, port $PORT --> $cport\$" "$TMP/trace.out"
}

@test "v6 connections trace as ipv6, v4-mapped ones as ipv4" {
	load_bypass
	spawn trace "$TOP/trace_bpf_output.sh"
	iperf_server "$PORT"
	iperf_client -c ::1 -p "$PORT" -t 1 >/dev/null
	iperf_server "$PORT"
	iperf_client -c 127.0.0.1 -p "$PORT" -t 1 >/dev/null
	sleep 0.5
	cat "$TMP/trace.out"
	(($(grep -c "<<< ipv6 op = [45], port .* --> $PORT\$\|<<< ipv6 op = 5, port $PORT --> " "$TMP/trace.out") == 4))
	(($(grep -c "<<< ipv4 op = 4, port .* --> $PORT\$\|<<< ipv4 op = 5, port $PORT --> " "$TMP/trace.out") == 4))
}

@test "--quiet writes no trace line" {
	load_bypass --quiet
	spawn trace "$TOP/trace_bpf_output.sh"
	iperf_server "$PORT" -B 127.0.0.1
	iperf_client -c 127.0.0.1 -p "$PORT" -t 1 >/dev/null
	sleep 0.5
	(($(counter sockets_inserted) == 4))
	! grep -q -- "--> $PORT\$" "$TMP/trace.out"
}

@test "load twice and unload twice is clean: no pins, attachments or programs left" {
	before=$(our_progs)
	load_bypass
	run load_bypass
	[[ $status -eq 0 && $output == *"already loaded"* ]]
	# One copy: three attachments (sock_ops, sock_release, setsockopt),
	# one program of each kind more than before.
	(($(cg_progs "$TEST_CG") == 3))
	(($(our_progs) == before + 4))
	unload_bypass
	run unload_bypass
	[[ $status -eq 0 ]]
	[[ ! -e $SOCKOPS_PIN_DIR ]]
	(($(cg_progs "$TEST_CG") == 0))
	# The kernel frees programs after an RCU grace period.
	for _ in $(seq 50); do
		(($(our_progs) == before)) && break
		sleep 0.1
	done
	(($(our_progs) == before))
}

@test "by default load.sh attaches to the root of the cgroup v2 mount" {
	"$TOP/load.sh"
	id=$(prog_id "$SOCKOPS_PIN_DIR/$PIN_SOCKOPS")
	[[ $(attached_cgroups "$id") == "$CG_ROOT" ]]
	bpftool -j cgroup show "$CG_ROOT" |
		jq -e --argjson id "$id" 'any(.[]; .id == $id and .attach_flags == "multi")'
	unload_bypass
	[[ -z $(attached_cgroups "$id") ]]
}

@test "a port with no listener is refused exactly as without the bypass" {
	run in_cg "$XFER" send -a 127.0.0.1 -p "$PORT"
	plain=$output
	load_bypass
	run in_cg "$XFER" send -a 127.0.0.1 -p "$PORT"
	[[ $status -ne 0 ]]
	[[ $output == *"Connection refused"* ]]
	[[ $output == "$plain" ]]
	(($(counter sockets_inserted) == 0))
}

@test "a peer outside the map is reached by plain TCP, intact" {
	load_bypass
	# The server runs outside the test cgroup, so only the client is in
	# the map: its sends find no peer and must go by TCP.
	"$XFER" recv -b 127.0.0.1 -p "$PORT" >"$TMP/recv.out" 2>&1 &
	PIDS+=($!)
	wait_port "$PORT"
	lo_capture_start "$PORT"
	run in_cg "$XFER" send -a 127.0.0.1 -p "$PORT" -B 10000000 -R 1000000
	lo_capture_stop
	echo "$output"
	[[ $status -eq 0 ]]
	(($(counter sockets_inserted) == 1))
	(($(counter bytes_redirected) == 0))
	(($(counter bytes_passed) <= 10000000 + 24))	# counter()
	(($(tcp_in recv) == 10000000 + 24))
	(($(lo_data_packets) > 0))
}
