# SPDX-License-Identifier: GPL-2.0
# helpers.bash - what the bats suites share.  Load with: load helpers
#
# Every test gets its own pin directory and, unless it asks for the root
# cgroup, its own cgroup v2; teardown undoes everything the test started,
# even when it failed: servers (killed by PID), captures, the bypass,
# namespaces and the cgroup.

TOP=$(cd "$BATS_TEST_DIRNAME/.." && pwd)
source "$TOP/common.sh"

# The tests' C programs (make builds them): checksummed transfers, and a
# writer whose reader never reads.
XFER=$TOP/tests/probes/xfer
NOREAD=$TOP/tests/probes/noread

# Ports are spread per test file so that a leftover socket in TIME_WAIT from
# one test never meets the next.  SOCKOPS_TEST_PORT_OFFSET shifts them all,
# so that two copies of the suite can run side by side on one host.
BASE_PORT=$(( ${BASE_PORT:-20000} + ${SOCKOPS_TEST_PORT_OFFSET:-0} ))

common_setup() {
	[[ $EUID -eq 0 ]] || skip "needs root"
	CG_ROOT=$(cgroup2_root)
	BPFFS=$(bpffs_dir)
	export SOCKOPS_PIN_DIR=$BPFFS/sockops-test-$$-$BATS_TEST_NUMBER
	TEST_CG=$CG_ROOT/sockops-test-$$-$BATS_TEST_NUMBER
	mkdir "$TEST_CG"
	PIDS=()
	NETNS=()
	TMP=$BATS_TEST_TMPDIR
	PORT=$((BASE_PORT + BATS_TEST_NUMBER * 10))
}

common_teardown() {
	local pid ns

	for pid in "${PIDS[@]}"; do
		kill "$pid" 2>/dev/null || true
	done
	for pid in "${PIDS[@]}"; do
		wait "$pid" 2>/dev/null || true
	done
	"$TOP/unload.sh" --pin-dir "$SOCKOPS_PIN_DIR" >/dev/null 2>&1 || true
	for ns in "${NETNS[@]}"; do
		ip netns del "$ns" 2>/dev/null || true
	done
	# Anything still in the test cgroup, or below it, was started by
	# this test.
	[[ -z ${TEST_CG:-} ]] || cgroup_remove "$TEST_CG" ||
		echo "teardown: could not remove $TEST_CG" >&2
}

# bpf_cc SRC OBJ: build a test's own BPF program, as the Makefile builds
# ours (<asm/types.h> is in the multiarch include directory).
bpf_cc() {
	local multiarch

	multiarch=$(gcc -print-multiarch)
	clang -g -O2 -target bpf -I"$TOP" ${multiarch:+-I/usr/include/$multiarch} \
		-c "$1" -o "$2"
}

# kernel_before VERSION: true if the running kernel is older than VERSION
# (e.g. 6.10).  For an expectation that depends on a change in the kernel,
# which the caller names.
kernel_before() {
	[[ $(printf '%s\n' "$1" "$(uname -r)" | sort -V | head -n 1) != "$1" ]]
}

setup() { common_setup; }
teardown() { common_teardown; }

# load_bypass [ARGS...]: load into this test's cgroup and pin directory.
load_bypass() {
	"$TOP/load.sh" --cgroup "$TEST_CG" "$@"
}

unload_bypass() {
	"$TOP/unload.sh"
}

# cg_exec CG CMD...: move this shell into cgroup CG and exec CMD.  Only in a
# subshell or in the background ("cg_exec ... &"): there the forked shell
# becomes CMD, so $! is CMD's own PID and teardown's kill reaches it.
cg_exec() {
	echo "$BASHPID" >"$1/cgroup.procs" || return
	shift
	exec "$@"
}

# in_cgroup CG CMD...: run CMD inside cgroup CG, in the foreground.
in_cgroup() {
	(cg_exec "$@")
}

# in_cg CMD...: run CMD inside this test's cgroup.
in_cg() {
	(cg_exec "$TEST_CG" "$@")
}

# spawn NAME CMD...: start CMD in the background inside the test cgroup, with
# output in $TMP/NAME.out; its PID is recorded so teardown stops it.
spawn() {
	local name=$1

	shift
	cg_exec "$TEST_CG" "$@" >"$TMP/$name.out" 2>&1 &
	PIDS+=($!)
	LAST_PID=$!
}

# wait_port PORT [NETNS]: wait until something listens on TCP PORT.
wait_port() {
	local i cmd=(ss -Htln "sport = :$1")

	[[ -n ${2:-} ]] && cmd=(ip netns exec "$2" "${cmd[@]}")
	for i in $(seq 100); do
		[[ -n $("${cmd[@]}") ]] && return 0
		sleep 0.05
	done
	echo "nothing listens on port $1" >&2
	return 1
}

# iperf_server PORT [ARGS...]: one-shot iperf3 server in the test cgroup.
iperf_server() {
	local port=$1

	shift
	spawn iperf3-s iperf3 -s -1 -p "$port" "$@"
	wait_port "$port"
}

# capture_start PCAP IFACE FILTER [NETNS]: capture IFACE (in NETNS) into
# PCAP until capture_stop; one capture at a time.  A 64 MiB buffer (-B):
# with the default 2 MiB the kernel drops packets of a fast transfer when
# tcpdump does not get a CPU in time, and a test would count bytes short.
capture_start() {
	spawn tcpdump ${4:+ip netns exec "$4"} tcpdump -i "$2" -nn -U \
		--immediate-mode -B 65536 -w "$1" "$3"
	CAP_PID=$LAST_PID
	# tcpdump says "listening on" once the capture is live.
	for _ in $(seq 100); do
		grep -q "listening on" "$TMP/tcpdump.out" 2>/dev/null && return 0
		sleep 0.05
	done
	echo "tcpdump did not start" >&2
	return 1
}

capture_stop() {
	sleep 0.2
	kill "$CAP_PID"
	wait "$CAP_PID" 2>/dev/null || true
}

# lo_capture_start PORT: capture TCP PORT on lo into $TMP/lo.pcap.
lo_capture_start() { capture_start "$TMP/lo.pcap" lo "tcp port $1"; }
lo_capture_stop() { capture_stop; }

# lo_packets [FILTER]: packets in the capture, e.g. lo_packets "greater 100".
lo_packets() {
	tcpdump -nn -r "$TMP/lo.pcap" ${1:+"$1"} 2>/dev/null | wc -l
}

# lo_data_packets: captured TCP segments that carry payload.
lo_data_packets() {
	tcpdump -nn -r "$TMP/lo.pcap" 2>/dev/null | grep -vc "length 0$" || true
}

# lo_syn_packets: SYN and SYN-ACK segments in the capture (v4 and v6).
lo_syn_packets() {
	tcpdump -nn -r "$TMP/lo.pcap" 2>/dev/null | grep -c "Flags \[S" || true
}

# cg_progs CGROUP: programs attached directly to CGROUP.
cg_progs() {
	bpftool -j cgroup show "$1" | jq -s '.[0] // [] | length'
}

# counter FIELD: a counter of struct bypass_stats, summed over CPUs.
#
# bytes_passed and msgs_passed count what bpf_redir let go by TCP, and can
# fall short of it: when TCP cannot take all of a passed message (EAGAIN on
# a full send buffer, which xfer's non-blocking sends meet),
# tcp_bpf_send_verdict() keeps the pass verdict in psock->eval, and the
# next send goes out by TCP without running bpf_redir (6.1 to 6.18 alike).
# Tests prove "all by TCP" with the receivers' tcp_in or a capture, and
# bound bytes_passed from above.
counter() {
	bpftool -j map dump pinned "$SOCKOPS_PIN_DIR/$PIN_STATS" |
		jq "[.[0].formatted.values[].value.$1] | add"
}

# Races.  A connection races when its accepting end becomes established,
# and so enters the sockhash, after its client's first send: the client
# finds no peer and goes by TCP, counted in fallback_no_peer, its bytes
# intact and in order, until the server has read them and the connection
# comes back to the bypass (return_no_peer).  Before 6.5 that is common
# under load: ksoftirqd_running() in kernel/softirq.c defers the softirq
# that processes the client's final ACK to ksoftirqd (removed by commit
# d15121be7485, "Revert "softirq: Let ksoftirqd do its job""); since then
# the accepting end is normally established before the client's connect()
# returns, and it is late only when the listener's lock is held as the ACK
# arrives (many clients connecting at once).  The helpers below hold the
# counters to what went by TCP, which a race or a memory fallback explains
# (docs/kernels.md).

# expect_split TOTAL CLIENT: of the TOTAL bytes sent, all were redirected
# but some of the CLIENT bytes (what a connecting side sends) of each
# connection that raced: at least its first send, at most all of them.  A
# reader that fell its queue bound behind (a busy host), or the host guard,
# sends a stretch by TCP too: then every byte is still counted once, by
# either counter, in any split.
expect_split() {
	local total=$1 client=$2 raced passed redirected lagged

	raced=$(counter fallback_no_peer)
	passed=$(counter bytes_passed)
	redirected=$(counter bytes_redirected)
	lagged=$(fallbacks_for_memory)
	echo "redirected=$redirected passed=$passed of $total;" \
	     "raced connections: $raced x up to $client client bytes;" \
	     "came back: $(counter return_no_peer); fell behind: $lagged"
	((passed + redirected == total)) || return 1
	((lagged == 0)) || return 0
	((passed <= raced * client)) || return 1
	(((passed > 0) == (raced > 0)))
}

# tcp_in NAME...: the bytes that came by TCP to the xfers NAME..., as each
# measured with TCP_INFO (tests/probes/xfer.c).
tcp_in() {
	local name sum=0

	for name in "$@"; do
		sum=$((sum + $(sed -n 's/.* tcp_in=\([0-9]*\).*/\1/p' "$TMP/$name.out")))
	done
	echo "$sum"
}

# fallbacks_for_memory: connections the memory bounds sent on by TCP.  On a
# small host (tcp_mem of 2 GiB is 118 MiB), a few readers that lag can
# reach the host guard (docs/how-it-works.md, "Memory").
fallbacks_for_memory() {
	echo $(($(counter fallback_queue) + $(counter fallback_tcp_mem) + $(counter fallback_backlog)))
}

# expect_xfer_split TOTAL TCP NAME...: of the TOTAL bytes sent to the xfers
# NAME..., the counters redirected all but what they measured to have come
# by TCP; that is TCP bytes, sent by TCP on purpose, and more only if a
# connection fell back (its reader lagged, or it raced).  bytes_passed is
# exactly what came by TCP, but after a fallback only a lower bound: when
# TCP refuses a passed message (EAGAIN, a full send buffer),
# tcp_bpf_send_verdict() keeps the pass verdict in psock->eval and the next
# send goes by TCP without running bpf_redir (6.1 to 6.18 alike).
expect_xfer_split() {
	local total=$1 want=$2 tcp passed redirected fell

	shift 2
	tcp=$(tcp_in "$@")
	passed=$(counter bytes_passed)
	redirected=$(counter bytes_redirected)
	fell=$(($(fallbacks_for_memory) + $(counter fallback_no_peer)))
	echo "redirected=$redirected passed=$passed of $total; by TCP, as" \
		"measured: $tcp, on purpose: $want; fell back: $fell"
	((redirected == total - tcp)) || return 1
	((passed == tcp || (passed < tcp && fell > 0))) || return 1
	((tcp == want || (tcp > want && fell > 0)))
}

# map_entries: sockets in the sockhash now.
map_entries() {
	bpftool -j map dump pinned "$SOCKOPS_PIN_DIR/$PIN_MAP" 2>/dev/null |
		jq length
}

# our_progs: how many programs named like ours are loaded at all.
our_progs() {
	bpftool -j prog show | jq '[.[] | select(.name == "bpf_sockmap" or .name == "bpf_release" or .name == "bpf_redir" or .name == "bpf_sockopt")] | length'
}

# netns_add NAME: a namespace with lo up, deleted by teardown.
netns_add() {
	ip netns add "$1"
	NETNS+=("$1")
	ip -n "$1" link set lo up
}

# xfer_start NAME CG NS recv|send PORT ARGS...: start $XFER in the
# background, in cgroup CG and network namespace NS ("" for this one), with
# its output in $TMP/NAME.out and its PID in XPID[NAME] (and PIDS, for
# teardown).  A receiver listens when this returns.
xfer_start() {
	local name=$1 cg=$2 ns=$3 mode=$4 port=$5 cmd

	shift 5
	declare -p XPID >/dev/null 2>&1 || declare -gA XPID=()
	cmd=("$XFER" "$mode" -p "$port" "$@")
	[[ -z $ns ]] || cmd=(ip netns exec "$ns" "${cmd[@]}")
	cg_exec "$cg" "${cmd[@]}" >"$TMP/$name.out" 2>&1 &
	PIDS+=($!)
	XPID[$name]=$!
	[[ $mode == send ]] || wait_port "$port" "$ns"
}

# xfer_finish NAME...: wait for each xfer that xfer_start started; fail
# unless each exited 0 and reports all its connections intact.
xfer_finish() {
	local name rc bad=0

	for name in "$@"; do
		rc=0
		wait "${XPID[$name]}" || rc=$?
		echo "$name (exit $rc): $(cat "$TMP/$name.out")"
		((rc == 0)) || bad=1
		grep -Eq "conns=([0-9]+) ok=\\1 bad=0 " "$TMP/$name.out" || bad=1
	done
	return $bad
}
