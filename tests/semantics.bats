#!/usr/bin/env bats
# SPDX-License-Identifier: GPL-2.0
#
# Application transparency: with the bypass on, an application cannot tell
# it is there, except by speed; and where it can, exactly how.
#
# tests/probes/sockprobe runs one scenario per probe on a fresh loopback
# connection and prints one canonical line: return values, errno names, poll
# masks, and "data=ok" for payloads checked byte by byte.  Each test below runs every
# probe twice in the test cgroup, on plain TCP and then with the bypass, and
# compares.  A probe must print the same line both times, except the known
# divergences in KNOWN, which must print exactly their known line.  A kernel
# that fixes one fails this test on purpose: update docs/semantics.md and KNOWN.
#
# The path field (-P) proves which way the data went: "tcp" in the plain run,
# "bypass" with the bypass loaded, from TCP_INFO's count of bytes that TCP
# itself carried.

BASE_PORT=30000
load helpers

readonly PROBE=$TOP/tests/probes/sockprobe

# The known divergences on Linux 6.18, with the bypass: probe -> its line.
# (-g: bats sources this file inside a function.)
# Why each happens, in the kernel, is in docs/semantics.md.
declare -gA KNOWN=(
	# tcp_bpf_recvmsg() returns -EAGAIN after one wakeup with nothing to
	# read: shutdown() by another thread, or a signal.
	[reply_blocking]='reply_blocking: req=1000 end=0 recvs=-1(EAGAIN) data=ok'
	[halfclose_blocking]='halfclose_blocking: req=1000 end=0 recvs=-1(EAGAIN) data=ok'
	[signal_restart]='signal_restart: recvs=-1(EAGAIN) data=ok'
	[signal_eintr]='signal_eintr: recvs=-1(EAGAIN) data=ok'
	# sk_msg_recvmsg() knows no MSG_TRUNC, MSG_WAITALL, and no
	# SO_PEEK_OFF for the bytes redirected before it was set (after it,
	# the peer's bytes go by TCP: bpf_sockopt.c).
	[peek_off]='peek_off: set=0 peek1=30 peek2=30 read=100 data=BAD'
	[trunc]='trunc: trunc40=-1(EFAULT) rest=100 data=BAD'
	[waitall]='waitall: recvs=16384,16384,16384,16384,0 data=ok'
	# Bytes redirected before the receiver set SO_RCVLOWAT stay in its
	# psock queue: sk_msg_is_readable() calls them readable, and
	# tcp_bpf_recvmsg() returns them alone.  (A mark set after the
	# handshake sends the peer's later bytes by TCP: bpf_sockopt.c.)
	[opt_rcvlowat_queued]='opt_rcvlowat_queued: queued=IN read=3 data=ok'
	# tcp_zerocopy_receive() reads sk_receive_queue only: neither maps nor
	# counts redirected bytes.
	[opt_zerocopy_receive]='opt_zerocopy_receive: mmap=ok zc=0 mapped=0 skip=0 inq=0 read=100 data=ok'
	# tcp_splice_read() reads sk_receive_queue only.
	[splice_recv]='splice_recv: splice=-1(EAGAIN) recv_after=1000 data=ok'
	# The urgent byte is redirected inline, as ordinary data.
	[oob]='oob: inline=4 got=abcX atmark=0 oob=-1(EAGAIN) got='
	# tcp_close() finds sk_receive_queue empty: FIN, not RST.
	[rst_unread]='rst_unread: poll=RDHUP recv=0 send=1'
	[peer_exit_unread]='peer_exit_unread: child=0 recvs=65536,0 data=ok'
)

# FIONREAD (SIOCINQ) on a socket in the sockhash counts the bytes queued in
# its psock only since "bpf, sockmap: Fix FIONREAD for sockmap" (Jiayuan
# Chen, bpf-next January 2026, for Linux 7.0; backported to 6.6.y and 6.12.y,
# 6.12.117 has it; 6.1.y has not, as of 6.1.192).  Before, it counts
# sk_receive_queue only: 0 for redirected bytes.  That commit added struct
# sk_psock's msg_tot_len, so the kernel's BTF tells which this kernel is.
setup_file() {
	FIONREAD_PSOCK=no
	if bpftool btf dump file /sys/kernel/btf/vmlinux format raw |
		grep -q "'msg_tot_len'"; then
		FIONREAD_PSOCK=yes
	fi
	export FIONREAD_PSOCK
}

# kernel_known MODE: add to KNOWN what this kernel's sockmap does
# differently, and fill TCP_KNOWN with the probes where this kernel's TCP
# itself answers differently from 6.18: there both runs must print
# exactly that line.  Each names the kernel change.
declare -gA TCP_KNOWN=()
kernel_known() {
	local v6_server=1

	[[ $1 == -4 ]] && v6_server=0
	if [[ $FIONREAD_PSOCK == no ]]; then
		KNOWN[fionread]='fionread: empty=0 sent600=0 read150=0 read_all=0 outq=0 eof=0 data=ok'
	fi
	# TCP has SO_PEEK_OFF since Linux 6.9 (05ea491641d3 "tcp: add support
	# for SO_PEEK_OFF socket option"), on IPv6 sockets since 6.12
	# (be9a4fb831b8 "tcp: add SO_PEEK_OFF socket option tor TCPv6").  The
	# server socket is an IPv6 one in -6 and -m.  Without it, TCP and the
	# bypass both refuse the option and both peeks start at offset 0.
	if kernel_before 6.9 || { ((v6_server)) && kernel_before 6.12; }; then
		unset 'KNOWN[peek_off]'
		TCP_KNOWN[peek_off]='peek_off: set=-1(EOPNOTSUPP) peek1=30 peek2=30 read=100 data=BAD'
		TCP_KNOWN[opt_peek_off]='opt_peek_off: set=-1(EOPNOTSUPP) peek1=30 peek2=30 read=100 data=BAD'
	fi
}

# Probes whose connection does not take the bypass even when it is loaded.
declare -gA PATH_WITH_BYPASS=(
	[rcvlowat_listener]=tcp		# bpf_sockops leaves SO_RCVLOWAT to TCP
	[opt_listener]=tcp		# ... and the other options it reads
	[opt_preconnect]=tcp
	[send_after_connect]=none	# no handshake: no path to report
	# An option set after the handshake: the peer's later bytes go by TCP
	# (bpf_sockopt.c); those it sent before were redirected.
	[opt_rcvlowat]=tcp
	[opt_rcvlowat_client]=tcp
	[opt_rcvlowat_queued]=mixed
	[opt_switch]=mixed
	[opt_peek_off]=tcp
	[opt_timestamping]=tcp
	# SO_RCVBUF caps the queue bound: redirected up to the receiver's
	# buffer, then TCP.
	[opt_rcvbuf]=mixed
)

# probes: every probe that "all" runs (the -M probes need the bypass, the
# fallback_ ones a small --max-queue: each has a test of its own below;
# opt_hold is options.bats').
probes() {
	"$PROBE" -l | grep -vxE 'delete_queued|late_peer|fallback_.*|opt_hold'
}

# field LINE NAME: the value of NAME=... in a probe's line.
field() {
	sed -n "s/.* $2=\\([^ ]*\\).*/\\1/p" <<<"$1"
}

# check_paths FILE RUN: each line names the path its bytes took in RUN.
check_paths() {
	local file=$1 run=$2 name want line bad=0

	while read -r name; do
		line=$(grep "^$name:" "$file")
		want=tcp
		[[ $name == send_after_connect ]] && want=none
		[[ $run == bypass ]] && want=${PATH_WITH_BYPASS[$name]:-bypass}
		if [[ $(field "$line" path) != "$want" ]]; then
			echo "$run: $name took path $(field "$line" path), not $want"
			bad=1
		fi
	done < <(probes)
	return $bad
}

# compare MODE: every probe on plain TCP, then with the bypass; the lines
# must match but for KNOWN, which must match KNOWN exactly.
compare() {
	local mode=$1 name plain bypass before after bad=0 n

	kernel_known "$mode"
	in_cg "$PROBE" "$mode" -p "$PORT" -P all >"$TMP/plain.txt"
	load_bypass --quiet
	before=$(counter msgs_redirected)
	in_cg "$PROBE" "$mode" -p "$PORT" -P all >"$TMP/bypass.txt"
	after=$(counter msgs_redirected)

	n=$(probes | wc -l)
	echo "probes=$n msgs_redirected: $before -> $after"
	(($(wc -l <"$TMP/plain.txt") == n && $(wc -l <"$TMP/bypass.txt") == n))
	check_paths "$TMP/plain.txt" plain
	check_paths "$TMP/bypass.txt" bypass
	# Every probe but two sends at least its two handshake bytes.
	((after - before >= 2 * (n - 2)))

	while read -r name; do
		plain=$(grep "^$name:" "$TMP/plain.txt" | sed 's/ path=.*//')
		bypass=$(grep "^$name:" "$TMP/bypass.txt" | sed 's/ path=.*//')
		if [[ -n ${TCP_KNOWN[$name]:-} ]]; then
			echo "kernel: $bypass"
			echo "    tcp $plain"
			if [[ $plain != "${TCP_KNOWN[$name]}" || $bypass != "$plain" ]]; then
				echo "  ^ expected both ways: ${TCP_KNOWN[$name]}"
				bad=1
			fi
		# Plain TCP is the reference: it never loses a byte.
		elif [[ $plain == *data=BAD* || $plain == *hung* ]]; then
			echo "plain TCP failed: $plain"
			bad=1
		elif [[ -n ${KNOWN[$name]:-} ]]; then
			echo "known:  $bypass"
			echo "    tcp $plain"
			if [[ $bypass != "${KNOWN[$name]}" ]]; then
				echo "  ^ expected: ${KNOWN[$name]}"
				bad=1
			fi
			if [[ $plain == "${KNOWN[$name]}" ]]; then
				echo "  ^ no longer diverges: update docs/semantics.md and KNOWN"
				bad=1
			fi
		elif [[ $bypass != "$plain" ]]; then
			echo "DIFFERS: $name"
			echo "  tcp:    $plain"
			echo "  bypass: $bypass"
			bad=1
		fi
	done < <(probes)
	return $bad
}

@test "IPv4: every probe sees what plain TCP shows, but for the known limits" {
	compare -4
}

@test "IPv6: every probe sees what plain TCP shows, but for the known limits" {
	compare -6
}

@test "v4 client to dual-stack [::] listener: every probe sees what plain TCP shows, but for the known limits" {
	compare -m
}

@test "SO_RCVLOWAT inherited from the listener keeps the connection on TCP, with TCP's answers" {
	local plain line

	in_cg "$PROBE" -p "$PORT" -P rcvlowat_listener rcvlowat_poll >"$TMP/plain.txt"
	load_bypass --quiet
	in_cg "$PROBE" -p "$PORT" -P rcvlowat_listener >"$TMP/bypass.txt"
	cat "$TMP/plain.txt" "$TMP/bypass.txt"
	plain=$(grep '^rcvlowat_listener:' "$TMP/plain.txt")
	line=$(cat "$TMP/bypass.txt")
	[[ $line == "$plain" ]]
	[[ $(field "$line" path) == tcp ]]
	# The listener's mark is inherited: the same answers as a mark set on
	# the accepted socket under TCP.
	[[ $(field "$line" partial) == 0 && $(field "$line" recvs) == 110,0 ]]
	# Two connections: each client is in the sockhash, no server is, so
	# nothing was redirected and every client send went by TCP.
	(($(counter sockets_inserted) == 2))
	(($(counter sockets_skipped) == 2))
	(($(counter msgs_redirected) == 0))
	(($(counter msgs_passed) > 0))
}

@test "removing a socket from the sockhash frees its unread bytes: why bpf_sockops never deletes on a state change" {
	local mode line want

	load_bypass --quiet
	# 1000 bytes wait in the receiver's psock queue; its entry is deleted
	# as a STATE_CB would; they are gone (inq 0, EAGAIN), the next bytes
	# come by TCP.  "queued" is FIONREAD: 0 on a kernel that does not count
	# the psock queue (setup_file).
	want='delete_queued: queued=1000 delete=0 inq_after=0 recv_after=-1(EAGAIN) lost=1000 later=10 data=ok path=bypass'
	[[ $FIONREAD_PSOCK == yes ]] || want=${want/queued=1000/queued=0}
	for mode in -4 -6 -m; do
		line=$(in_cg "$PROBE" "$mode" -p "$PORT" -P -M "$SOCKOPS_PIN_DIR/$PIN_MAP" delete_queued)
		echo "$mode: $line"
		[[ $line == "$want" ]]
	done
}

@test "a connection whose first bytes went by TCP: in order while they are unread, back on the bypass once they are read" {
	local mode line want

	load_bypass --quiet
	# The client is in the sockhash, the server is not (SO_RCVLOWAT=2 on
	# the listener): chunk A goes by TCP and waits unread.  Then the probe
	# inserts the server, and the client sends chunk B.  B must come
	# behind A, by TCP.  Once both are read and acknowledged, chunk C comes
	# back to the bypass: path is C's, and TCP_INFO counted none of it.
	want='late_peer: queued=1000 inserted=1 order=ok bytes=2000 later=1000 data=ok path=bypass'
	for mode in -4 -6 -m; do
		line=$(in_cg "$PROBE" "$mode" -p "$PORT" -P -M "$SOCKOPS_PIN_DIR/$PIN_MAP" late_peer)
		echo "$mode: $line"
		[[ $line == "$want" ]]
	done
	# Per connection: the client inserted, the server skipped; A and B
	# (1000 bytes each) passed, C (1000) was redirected.
	echo "inserted=$(counter sockets_inserted) skipped=$(counter sockets_skipped)" \
	     "redirected=$(counter msgs_redirected)/$(counter bytes_redirected)" \
	     "passed=$(counter msgs_passed)/$(counter bytes_passed)" \
	     "fallback_no_peer=$(counter fallback_no_peer) return_no_peer=$(counter return_no_peer)"
	(($(counter sockets_inserted) == 3))
	(($(counter sockets_skipped) == 3))
	(($(counter msgs_passed) == 2 * 3 && $(counter bytes_passed) == 2000 * 3))
	(($(counter msgs_redirected) == 3 && $(counter bytes_redirected) == 1000 * 3))
	# Each client fell back once, at A, for the missing peer, and came
	# back once, at C.
	(($(counter fallback_no_peer) == 3 && $(counter return_no_peer) == 3))
	(($(counter fallback_queue) + $(counter fallback_tcp_mem) + $(counter fallback_backlog) == 0))
}

# The fallback_ probes, and the path each one's last bytes take with the
# bypass: "mixed" for a transfer that fell back and ended on TCP, "tcp" for
# bytes that must not come back to the bypass, "bypass" for those that do.
declare -gA FALLBACK_PATH=(
	[fallback_shutdown]=mixed
	[fallback_close]=mixed
	[fallback_peer_shutdown]=tcp
	[fallback_oob]=tcp
	[fallback_waitall]=tcp
	[fallback_return]=bypass
)

@test "a connection that falls back to TCP gets TCP's answers: shutdown, close, urgent data, a reader asleep in MSG_WAITALL; and it comes back" {
	local mode name plain bypass line bad=0 n=${#FALLBACK_PATH[@]}

	# With a 1 MiB bound, each probe's 4 MiB sent while its reader waits
	# fall back to TCP after the first MiB.
	for mode in -4 -6 -m; do
		in_cg "$PROBE" "$mode" -p "$PORT" -P "${!FALLBACK_PATH[@]}" >>"$TMP/plain.txt"
	done
	load_bypass --quiet --max-queue 1M
	for mode in -4 -6 -m; do
		in_cg "$PROBE" "$mode" -p "$PORT" -P "${!FALLBACK_PATH[@]}" >>"$TMP/bypass.txt"
	done
	paste -d '\n' "$TMP/plain.txt" "$TMP/bypass.txt"
	(($(wc -l <"$TMP/plain.txt") == 3 * n && $(wc -l <"$TMP/bypass.txt") == 3 * n))
	while read -r line; do
		name=${line%%:*}
		[[ $(field "$line" path) == tcp ]] || { echo "plain: $name: not tcp"; bad=1; }
		[[ $line != *data=BAD* && $line != *stuck* ]] || { echo "plain TCP failed: $line"; bad=1; }
	done <"$TMP/plain.txt"
	while read -r line; do
		name=${line%%:*}
		if [[ $(field "$line" path) != "${FALLBACK_PATH[$name]}" ]]; then
			echo "bypass: $name took path $(field "$line" path), not ${FALLBACK_PATH[$name]}"
			bad=1
		fi
	done <"$TMP/bypass.txt"
	# Every line as TCP's, in each mode.
	diff <(sed 's/ path=.*//' "$TMP/plain.txt") <(sed 's/ path=.*//' "$TMP/bypass.txt") || bad=1
	echo "fallback_queue=$(counter fallback_queue) return_queue=$(counter return_queue)" \
	     "closed_on_tcp=$(counter closed_on_tcp)"
	# Every probe fell back once; only fallback_return came back.
	(($(counter fallback_queue) == 3 * n)) || bad=1
	(($(counter return_queue) == 3)) || bad=1
	# Every connection has closed: none is on TCP now.
	(($(counter fallback_queue) - $(counter return_queue) == $(counter closed_on_tcp))) || bad=1
	return $bad
}

@test "checksummed transfers across half-close and close: 600 connections, both ways, nothing lost" {
	local bytes

	load_bypass --quiet
	# Tiny and large transfers, 8 and 4 at a time.  Each end half-closes
	# when done, reads to EOF and closes; xfer checks every byte.
	xfer_start tiny "$TEST_CG" "" recv "$PORT" -n 400
	xfer_start tiny-s "$TEST_CG" "" send "$PORT" -C 400 -P 8 -B 1 -R 1 -s 7
	xfer_finish tiny-s tiny
	xfer_start big "$TEST_CG" "" recv "$((PORT + 1))" -n 200
	xfer_start big-s "$TEST_CG" "" send "$((PORT + 1))" -C 200 -P 4 -B 300000 -R 200000 -l 7000 -s 9
	xfer_finish big-s big
	bytes=$((400 * 2 + 200 * 500000))
	echo "payload=$bytes bytes_redirected=$(counter bytes_redirected) msgs_passed=$(counter msgs_passed)"
	# Every payload byte, and each connection's header, went through the
	# bypass: no send found its peer missing (but for a race,
	# helpers.bash, whose bytes the ends saw come by TCP).
	(($(counter bytes_redirected) + $(counter bytes_passed) >= bytes))
	(($(counter bytes_passed) == $(tcp_in tiny tiny-s big big-s)))
	(($(counter msgs_passed) == 0 || $(counter fallback_no_peer) > 0))
	(($(counter sockets_inserted) == 2 * 600))
}
