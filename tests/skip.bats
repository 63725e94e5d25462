#!/usr/bin/env bats
# SPDX-License-Identifier: GPL-2.0
#
# Keeping connections out: load.sh --skip-ports and --skip-cgroup leave the
# connections they name on plain TCP, count each socket they keep out, and
# leave every other connection on the bypass.  Each test proves both sides:
# lo carries the skipped connection's data, the counters show no redirect
# for it, and a connection beside it is still redirected.

BASE_PORT=30700
load helpers

readonly MB=1000000

# skip_hits MAP KEY: the count of sockets that KEY of skip hash MAP kept out.
skip_hits() {
	bpftool -j map dump pinned "$SOCKOPS_PIN_DIR/$1" |
		jq --argjson k "$2" '.[] | select(.formatted.key == $k) | .formatted.value'
}

# skip_lists: the config's bits for the skip lists that sock_ops looks up
# (SKIP_LIST_PORTS 1, SKIP_LIST_CGROUPS 2).
skip_lists() {
	"$TOP/status.sh" --json | jq .config.skip_lists
}

# on_bypass BYTES: the counters redirected at least BYTES; or, if a reader
# fell its queue bound behind (a busy host), redirected some and sent the
# rest by TCP, as flow control does.
on_bypass() {
	local redirected passed

	redirected=$(counter bytes_redirected)
	passed=$(counter bytes_passed)
	echo "redirected=$redirected passed=$passed fallbacks=$(fallbacks_for_memory)"
	((redirected >= $1)) && return
	(($(fallbacks_for_memory) > 0 && redirected > 0 && redirected + passed >= $1))
}

# xfer_pair NAME ADDR PORT: a checksummed 20 MB transfer over ADDR:PORT,
# both ends in the test cgroup.
xfer_pair() {
	xfer_start "$1-r" "$TEST_CG" "" recv "$3" -b "$2"
	xfer_start "$1-s" "$TEST_CG" "" send "$3" -a "$2" -B $((20 * MB))
	xfer_finish "$1-s" "$1-r"
}

# server_port_skipped ADDR: the server's port is listed.  The accepted
# socket matches on its local port, the client on its remote port.
server_port_skipped() {
	local addr=$1 other=$((PORT + 1))

	load_bypass --skip-ports "$PORT"
	lo_capture_start "$PORT"
	xfer_pair skipped "$addr" "$PORT"
	lo_capture_stop
	echo "lo data segments: $(lo_data_packets)"
	(($(lo_data_packets) > 0))
	(($(counter sockets_skipped_port) == 2))
	(($(skip_hits "$PIN_SKIP_PORTS" "$PORT") == 2))
	(($(counter sockets_inserted) == 0))
	# sk_msg never ran: the sockets are not in the map.
	(($(counter bytes_redirected) == 0))
	(($(counter bytes_passed) == 0))

	# Another port, same cgroup, same addresses: redirected.
	xfer_pair other "$addr" "$other"
	(($(counter sockets_inserted) == 2))
	on_bypass $((20 * MB))
	(($(counter sockets_skipped_port) == 2))
}

@test "a server port in --skip-ports keeps both ends of a v4 connection on TCP" {
	server_port_skipped 127.0.0.1
}

@test "a server port in --skip-ports keeps both ends of a v6 connection on TCP" {
	server_port_skipped ::1
}

# client_port_skipped ADDR: the client's port is listed.  iperf3 --cport
# binds the data connection's client end; the control connection, from an
# ephemeral port, is the one beside it that stays redirected.  The client
# matches on its local port, the accepted socket on its remote port.
client_port_skipped() {
	local addr=$1 cport=$((PORT + 5)) sent

	load_bypass --skip-ports "$cport"
	iperf_server "$PORT" -B "$addr"
	lo_capture_start "$cport"
	in_cg iperf3 -J -c "$addr" -p "$PORT" --cport "$cport" -n $((20 * MB)) -l 64k \
		>"$TMP/iperf.json"
	lo_capture_stop
	sent=$(jq '.end.sum_sent.bytes' "$TMP/iperf.json")
	echo "sent=$sent lo_data=$(lo_data_packets) redirected=$(counter bytes_redirected)"
	((sent >= 20 * MB))
	(($(lo_data_packets) > 0))
	(($(counter sockets_skipped_port) == 2))
	(($(skip_hits "$PIN_SKIP_PORTS" "$cport") == 2))
	# The control connection: inserted, a few hundred bytes redirected.
	(($(counter sockets_inserted) == 2))
	(($(counter bytes_redirected) > 0))
	(($(counter bytes_redirected) < MB))
}

@test "a client's local port in --skip-ports keeps that v4 connection on TCP" {
	client_port_skipped 127.0.0.1
}

@test "a client's local port in --skip-ports keeps that v6 connection on TCP" {
	client_port_skipped ::1
}

@test "--skip-cgroup keeps out a server in a cgroup below it, by the socket's cgroup" {
	mkdir -p "$TEST_CG/skipped/deeper"
	load_bypass --skip-cgroup "$TEST_CG/skipped"
	# The server, two levels down: its accepted socket is skipped.  The
	# client, in the test cgroup, is inserted; its peer is not in the map,
	# so it sends by TCP.
	xfer_start r "$TEST_CG/skipped/deeper" "" recv "$PORT" -b 127.0.0.1
	xfer_start s "$TEST_CG" "" send "$PORT" -a 127.0.0.1 -B $((20 * MB))
	xfer_finish s r
	(($(counter sockets_skipped_cgroup) == 1))
	(($(skip_hits "$PIN_SKIP_CGROUPS" "$(stat -c %i "$TEST_CG/skipped")") == 1))
	(($(counter sockets_inserted) == 1))
	(($(counter bytes_redirected) == 0))
	(($(counter bytes_passed) >= 20 * MB))

	# The other way round: the client in the skipped cgroup, the server in
	# the test cgroup.  On loopback the server's end becomes established
	# in softirq while the client's task is current: a check of the
	# current task's cgroup would skip the server too.
	xfer_start r2 "$TEST_CG" "" recv $((PORT + 1)) -b 127.0.0.1
	xfer_start s2 "$TEST_CG/skipped" "" send $((PORT + 1)) -a 127.0.0.1 -B $((20 * MB))
	xfer_finish s2 r2
	(($(counter sockets_skipped_cgroup) == 2))
	(($(counter sockets_inserted) == 2))
	(($(counter bytes_redirected) == 0))

	# Both ends outside it: redirected.
	xfer_pair other 127.0.0.1 $((PORT + 2))
	(($(counter sockets_inserted) == 4))
	on_bypass $((20 * MB))
}

@test "status.sh shows the skip lists and what each kept out; a rerun of load.sh replaces them" {
	mkdir "$TEST_CG/skipped"
	load_bypass --skip-ports "$PORT,443" --skip-cgroup "$TEST_CG/skipped"
	# Both lists have entries: sock_ops looks up both.
	(($(skip_lists) == 3))
	xfer_pair a 127.0.0.1 "$PORT"
	"$TOP/status.sh" | tee "$TMP/status.txt"
	grep -qx "skip:      ports 443 (0 sockets), $PORT (2 sockets)" "$TMP/status.txt"
	grep -qx "skip:      cgroup $TEST_CG/skipped (id $(stat -c %i "$TEST_CG/skipped")): 0 sockets" \
		"$TMP/status.txt"
	grep -Eq "^  sockets_skipped_port +2$" "$TMP/status.txt"
	"$TOP/status.sh" --json | jq -c '{skip_ports, skip_cgroups}' | tee "$TMP/status.json"
	jq -e --argjson p "$PORT" --arg cg "$TEST_CG/skipped" '
		.skip_ports == [{port: 443, sockets: 0}, {port: $p, sockets: 2}] and
		(.skip_cgroups | length == 1 and .[0].path == $cg and .[0].sockets == 0)
	' "$TMP/status.json"

	# Replace the port list on the loaded bypass: $PORT is no longer
	# skipped, the new port is; 443 stays with its count; the cgroup list,
	# not given, stays.
	load_bypass --skip-ports "443,$((PORT + 1))"
	(($(skip_lists) == 3))
	"$TOP/status.sh" --json | jq -c '{skip_ports, skip_cgroups}' | tee "$TMP/status.json"
	jq -e --argjson p $((PORT + 1)) '
		.skip_ports == [{port: 443, sockets: 0}, {port: $p, sockets: 0}] and
		(.skip_cgroups | length == 1)
	' "$TMP/status.json"
	xfer_pair b 127.0.0.1 "$PORT"
	(($(counter sockets_inserted) == 2))
	on_bypass $((20 * MB))
	xfer_pair c 127.0.0.1 $((PORT + 1))
	(($(counter sockets_skipped_port) == 4))

	# An empty list clears it.
	load_bypass --skip-ports ""
	[[ $("$TOP/status.sh" --json | jq -c .skip_ports) == "[]" ]]
	"$TOP/status.sh" | grep -qx "skip:      cgroup $TEST_CG/skipped .*"
	# Only the cgroup list is looked up now, and the cleared port is not
	# skipped.
	(($(skip_lists) == 2))
	xfer_pair d 127.0.0.1 $((PORT + 1))
	(($(counter sockets_skipped_port) == 4))
	(($(counter sockets_inserted) == 4))
}

@test "without skip lists, sock_ops looks up none; the first list given on a loaded bypass takes effect" {
	load_bypass
	(($(skip_lists) == 0))
	xfer_pair a 127.0.0.1 "$PORT"
	(($(counter sockets_inserted) == 2))
	load_bypass --skip-ports "$PORT"
	(($(skip_lists) == 1))
	xfer_pair b 127.0.0.1 "$PORT"
	(($(counter sockets_skipped_port) == 2))
	(($(counter sockets_inserted) == 2))
}

@test "load.sh refuses a bad skip list and leaves nothing loaded" {
	local bad

	mkdir "$TMP/not-a-cgroup"
	for bad in "--skip-ports 0" "--skip-ports 65536" "--skip-ports 80,http" \
		"--skip-ports 80,,443" "--skip-cgroup $TMP/not-a-cgroup" \
		"--skip-cgroup $CG_ROOT" \
		"--skip-ports $(seq -s, 1000 1064)"; do
		run load_bypass $bad
		echo "$bad: status $status: ${lines[*]: -1}"
		((status != 0))
		[[ ! -e $SOCKOPS_PIN_DIR ]]
		(($(cg_progs "$TEST_CG") == 0))
	done
}
