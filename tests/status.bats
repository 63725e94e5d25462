#!/usr/bin/env bats
# SPDX-License-Identifier: GPL-2.0
#
# Observability: the per-CPU counters match what applications did, and
# status.sh answers "is it on, where, and is it working?" in text and JSON.

BASE_PORT=26000
load helpers

# transfer FWD BACK [SEND_ARGS...]: one checksummed transfer, both ends in
# the test cgroup.
transfer() {
	local fwd=$1 back=$2

	shift 2
	spawn xfer-recv "$XFER" recv -b 127.0.0.1 -p "$PORT"
	wait_port "$PORT"
	in_cg "$XFER" send -a 127.0.0.1 -p "$PORT" -B "$fwd" -R "$back" "$@"
	wait "$LAST_PID"
}

@test "counters match a known transfer exactly" {
	load_bypass
	transfer 5000000 3000000 -l 1000
	# xfer sends a 24-byte header, then its payload in 1000-byte writes;
	# the receiver answers with its payload.  Every byte is redirected.
	(($(counter sockets_inserted) == 2))
	(($(counter insert_failed) == 0))
	expect_split $((5000000 + 24 + 3000000)) $((5000000 + 24))
	(($(counter msgs_redirected) + $(counter msgs_passed) >= 5000 + 1))
}

@test "sockets in the map return to zero when connections close" {
	load_bypass
	# Four connections, held open: their server stops after its first MiB
	# until $TMP/go exists, with most of its answer still to send.  Eight
	# sockets.
	spawn xfer-recv "$XFER" recv -b 127.0.0.1 -p "$PORT" -n 4 -Z "$TMP/go"
	recv=$LAST_PID
	wait_port "$PORT"
	spawn xfer-send "$XFER" send -a 127.0.0.1 -p "$PORT" -C 4 -P 4 -B 4000000 -R 16000000
	for _ in $(seq 100); do
		(($(map_entries) == 8)) && break
		sleep 0.1
	done
	(($("$TOP/status.sh" --json | jq .map.sockets) == 8))
	touch "$TMP/go"
	wait "$recv"
	for _ in $(seq 50); do
		(($(map_entries) == 0)) && break
		sleep 0.1
	done
	(($("$TOP/status.sh" --json | jq .map.sockets) == 0))
	(($(counter sockets_inserted) == 8))
}

@test "status.sh says when nothing is loaded, in text and JSON, and exits 1" {
	run "$TOP/status.sh"
	[[ $status -eq 1 ]]
	[[ $output == *"not loaded"*"$SOCKOPS_PIN_DIR"* ]]
	run "$TOP/status.sh" --json
	[[ $status -eq 1 ]]
	jq -e --arg pin "$SOCKOPS_PIN_DIR" '.loaded == false and .pin_dir == $pin' <<<"$output"
}

@test "status.sh shows the pin dir, cgroup, program IDs, sockets and counters" {
	load_bypass
	transfer 1000000 0
	sockops=$(prog_id "$SOCKOPS_PIN_DIR/$PIN_SOCKOPS")
	release=$(prog_id "$SOCKOPS_PIN_DIR/$PIN_RELEASE")
	redir=$(prog_id "$SOCKOPS_PIN_DIR/$PIN_REDIR")

	run "$TOP/status.sh"
	echo "$output"
	[[ $status -eq 0 ]]
	[[ $output == *"bypass:    loaded"* ]]
	[[ $output == *"pin dir:   $SOCKOPS_PIN_DIR"* ]]
	[[ $output == *"cgroup:    $TEST_CG"* ]]
	[[ $output == *"bpf_sockmap (sock_ops, id $sockops), bpf_release (sock_release, id $release), bpf_redir (sk_msg, id $redir)"* ]]
	[[ $output == *"0 sockets now, capacity 65536"* ]]
	[[ $output =~ bytes_redirected\ +1000024 ]]

	run "$TOP/status.sh" --json
	[[ $status -eq 0 ]]
	jq -e --arg pin "$SOCKOPS_PIN_DIR" --arg cg "$TEST_CG" \
		--argjson s "$sockops" --argjson rel "$release" --argjson r "$redir" '
		.loaded and .pin_dir == $pin and .cgroups == [$cg] and
		.programs.sock_ops.id == $s and .programs.sk_msg.id == $r and
		.programs.sock_release.id == $rel and
		.map.sockets == 0 and .map.max_entries == 65536 and .trace and
		.counters.sockets_inserted == 2 and
		.counters.bytes_redirected == 1000024' <<<"$output"
}

@test "status.sh changes nothing" {
	load_bypass
	transfer 1000000 0
	snapshot() {
		ls "$SOCKOPS_PIN_DIR"
		bpftool -j prog show pinned "$SOCKOPS_PIN_DIR/$PIN_SOCKOPS" | jq .id
		bpftool -j map dump pinned "$SOCKOPS_PIN_DIR/$PIN_STATS"
		bpftool -j map dump pinned "$SOCKOPS_PIN_DIR/$PIN_CONFIG"
		bpftool -j cgroup show "$TEST_CG"
		findmnt -n -o TARGET | sort
	}
	before=$(snapshot)
	"$TOP/status.sh" >/dev/null
	"$TOP/status.sh" --json >/dev/null
	diff <(echo "$before") <(snapshot)
}
