#!/usr/bin/env bats
# SPDX-License-Identifier: GPL-2.0
#
# Options set after the handshake (bpf_sockopt.c): a socket that sets one
# the bypass cannot honour has its peer's later bytes sent by TCP, intact
# and in order behind those already redirected; connections that set none
# pay nothing and stay on the bypass; the program runs beside another
# agent's setsockopt program; status.sh shows it all.
#
# tests/semantics.bats compares the opt_* probes with plain TCP in v4, v6
# and dual-stack; here are the counters and the attachment.

BASE_PORT=27000
load helpers

readonly PROBE=$TOP/tests/probes/sockprobe

setup() {
	common_setup
	FOREIGN_PIN=		# another agent's setsockopt program
}

teardown() {
	if [[ -n $FOREIGN_PIN ]]; then
		bpftool cgroup detach "$TEST_CG" cgroup_setsockopt \
			pinned "$FOREIGN_PIN/prog" 2>/dev/null || true
		rm -rf "$FOREIGN_PIN"
	fi
	common_teardown
}

# gate: sockets in opt_socks now, as bpf_redir sees it.
gate() {
	bpftool -j map dump pinned "$SOCKOPS_PIN_DIR/$PIN_OPT_GATE" |
		jq '.[0].formatted.value.sockets'
}

# foreign_load [multi]: a tiny cgroup/setsockopt program that counts its
# runs, pinned in its own directory and attached to the test cgroup.
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

SEC("cgroup/setsockopt")
int foreign_sockopt(struct bpf_sockopt *ctx)
{
	__u32 zero = 0;
	__u64 *runs = bpf_map_lookup_elem(&foreign_runs, &zero);

	if (runs)
		__sync_fetch_and_add(runs, 1);
	/* Longer than a page: let the kernel use the caller's bytes. */
	if (ctx->optlen > 4096)
		ctx->optlen = 0;
	return 1;
}

char _license[] SEC("license") = "GPL";
END
	bpf_cc "$TMP/foreign.c" "$TMP/foreign.o"
	FOREIGN_PIN=$BPFFS/sockops-foreign-$$-$BATS_TEST_NUMBER
	mkdir "$FOREIGN_PIN"
	bpftool prog load "$TMP/foreign.o" "$FOREIGN_PIN/prog" pinmaps "$FOREIGN_PIN"
	bpftool cgroup attach "$TEST_CG" cgroup_setsockopt pinned "$FOREIGN_PIN/prog" "$@"
}

foreign_runs() {
	bpftool -j map dump pinned "$FOREIGN_PIN/foreign_runs" | jq '.[0].formatted.value'
}

@test "connections that set no option the bypass cannot honour stay on the bypass: the gate stays shut" {
	local line mode

	load_bypass --quiet
	# 40 checksummed connections, 200 kB each way, setting nothing.
	xfer_start r "$TEST_CG" "" recv "$PORT" -n 40
	xfer_start s "$TEST_CG" "" send "$PORT" -C 40 -P 4 -B 200000 -R 200000 -s 3
	xfer_finish s r
	# Options the bypass honours, set on both ends after the handshake:
	# SO_RCVLOWAT=1, SO_KEEPALIVE, TCP_NODELAY.
	for mode in -4 -6 -m; do
		line=$(in_cg "$PROBE" "$mode" -p "$((PORT + 1))" -P opt_harmless)
		echo "$mode: $line"
		[[ $line == 'opt_harmless: got=1000 back=1000 data=ok path=bypass' ]]
	done
	echo "gate=$(gate) options_set=$(counter options_set)" \
	     "fallback_option=$(counter fallback_option)" \
	     "redirected=$(counter bytes_redirected) passed=$(counter bytes_passed)"
	(($(gate) == 0))
	(($(counter options_set) == 0 && $(counter fallback_option) == 0))
	# Every byte redirected, but for a connection that raced (helpers.bash),
	# whose bytes the ends saw come by TCP.
	(($(counter bytes_passed) == $(tcp_in r s)))
	(($(counter bytes_redirected) + $(counter bytes_passed) >= 40 * 400000 + 3 * 2002))
}

@test "SO_RCVLOWAT set after the handshake: the peer's later bytes go by TCP, every byte intact across the switch" {
	local mode line

	load_bypass --quiet
	# 16 KiB redirected and unread when the receiver sets its mark, then
	# 4 MiB by TCP, drained in odd pieces and checked byte by byte.
	for mode in -4 -6 -m; do
		line=$(in_cg "$PROBE" "$mode" -p "$PORT" -P opt_switch)
		echo "$mode: $line"
		[[ $line == 'opt_switch: bytes=4210688 end=0 data=ok path=mixed' ]]
	done
	echo "options_set=$(counter options_set) fallback_option=$(counter fallback_option)" \
	     "redirected=$(counter bytes_redirected) passed=$(counter bytes_passed)" \
	     "closed_on_tcp=$(counter closed_on_tcp) gate=$(gate)"
	# One receiver per mode set the option; its peer fell back once.
	(($(counter options_set) == 3 && $(counter fallback_option) == 3))
	# The handshake bytes and the 16 KiB were redirected, the 4 MiB not.
	(($(counter bytes_redirected) == 3 * (2 + 16384)))
	(($(counter bytes_passed) == 3 * 4194304))
	# All closed: the gate is shut again and no connection is on TCP.
	(($(gate) == 0))
	(($(counter closed_on_tcp) == 3))
	# None came back: that fallback is for good.
	(($(counter return_queue) + $(counter return_no_peer) == 0))
}

@test "bpf_sockopt runs beside another agent's setsockopt program attached with multi" {
	local line

	foreign_load multi
	load_bypass --quiet
	bpftool -j cgroup show "$TEST_CG" | jq -c '.[] | [.attach_type, .name, .attach_flags]'
	(($(bpftool -j cgroup show "$TEST_CG" |
		jq '[.[] | select(.attach_type == "cgroup_setsockopt" or .attach_type == "setsockopt")] | length') == 2))
	line=$(in_cg "$PROBE" -p "$PORT" -P opt_rcvlowat)
	echo "$line; foreign runs: $(foreign_runs)"
	[[ $line == 'opt_rcvlowat: small=0 recvs=10,3,0 data=ok path=tcp' ]]
	# Both ran: the foreign one on every setsockopt() (SO_REUSEADDR, ...),
	# ours saw the mark.
	(($(foreign_runs) >= 2))
	(($(counter options_set) == 1 && $(counter fallback_option) == 1))
	# unload.sh takes ours away and leaves the foreign one.
	unload_bypass
	[[ $(bpftool -j cgroup show "$TEST_CG" | jq -r '.[].name') == foreign_sockopt ]]
}

@test "load.sh refuses a cgroup where another setsockopt program is attached exclusively" {
	foreign_load
	run load_bypass --quiet
	echo "$output"
	((status != 0))
	[[ $output == *"setsockopt program foreign_sockopt"*"without 'multi'"* ]]
	[[ ! -e $SOCKOPS_PIN_DIR ]]
}

@test "status.sh shows bpf_sockopt and the sockets that set an option while they are open" {
	local json

	load_bypass --quiet
	# The probe holds its pair until its stdin, a FIFO, sees EOF: when fd
	# 8, its only writer, closes.  (Read-write, so that neither open
	# blocks; the probe does not inherit it.  Not spawn(): bash gives a
	# background command /dev/null as stdin unless the command itself
	# redirects it.)
	mkfifo "$TMP/hold"
	exec 8<>"$TMP/hold"
	cg_exec "$TEST_CG" "$PROBE" -p "$PORT" opt_hold <"$TMP/hold" 8<&- >"$TMP/hold.out" 2>&1 &
	PIDS+=($!)
	LAST_PID=$!
	for _ in $(seq 100); do
		grep -qx ready "$TMP/hold.out" && break
		sleep 0.05
	done
	cat "$TMP/hold.out"
	json=$("$TOP/status.sh" --json)
	jq -c '{programs, option_sockets, warnings}' <<<"$json"
	[[ $(jq -r .programs.setsockopt.name <<<"$json") == bpf_sockopt ]]
	(($(jq .option_sockets <<<"$json") == 1))
	[[ $(jq -c .warnings <<<"$json") == '[]' ]]
	"$TOP/status.sh" | grep -x 'options:   1 socket now set an option the bypass cannot honour; their peers send by TCP (0 connection directions so far)'
	"$TOP/status.sh" --prom | grep -E '^sockops_option_sockets\{pin_dir="[^"]*"\} 1$'
	exec 8>&-
	wait "$LAST_PID"
	cat "$TMP/hold.out"
	grep -qx 'opt_hold: held=1' "$TMP/hold.out"
	# Closed: out of opt_socks, the gate shut.
	(($(jq .option_sockets <<<"$("$TOP/status.sh" --json)") == 0))
	(($(counter options_set) == 1))
}

@test "status.sh warns when bpf_sockopt is not attached where bpf_sockmap is" {
	load_bypass --quiet
	bpftool cgroup detach "$TEST_CG" cgroup_setsockopt pinned "$SOCKOPS_PIN_DIR/$PIN_SOCKOPT"
	run "$TOP/status.sh"
	echo "$output"
	[[ $output == *"warning:   bpf_sockopt is not attached where bpf_sockmap is"* ]]
}
