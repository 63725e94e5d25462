#!/usr/bin/env bats
# SPDX-License-Identifier: GPL-2.0
#
# Containers on one host (load.sh --cross-netns): Docker's topology built by
# hand, each container a network namespace on a veth pair, the pairs on a
# Linux bridge that lives in a namespace of its own, as a host's would.
# Addresses are TEST-NET-2 (198.51.100.0/24) and 2001:db8::/64 only, inside
# namespaces the test makes.  The processes run in the test's cgroup (where
# the bypass is attached) and in a container's namespace (ip netns exec).
#
# Every transfer is checksummed by tests/probes/xfer: each connection
# carries its own pseudo-random pattern, so a byte that lands in the wrong
# socket is caught at its exact offset.

BASE_PORT=46000
load helpers

setup() {
	common_setup
	# Namespace names: this test's prefix, then the role.
	P=ct$$-$BATS_TEST_NUMBER
}

# bridge BR: a namespace BR holding a bridge, br0, up.
bridge() {
	netns_add "$1"
	ip -n "$1" link add br0 type bridge
	ip -n "$1" link set br0 up
}

# container NS BR N: a namespace NS whose eth0 is on BR's bridge, with
# 198.51.100.N/24 and 2001:db8::N/64 (no duplicate address detection, so
# that the address is usable at once).
container() {
	local ns=$1 br=$2 n=$3

	netns_add "$ns"
	ip -n "$ns" link add eth0 type veth peer name "v$n" netns "$br"
	ip -n "$br" link set "v$n" master br0 up
	ip -n "$ns" addr add "198.51.100.$n/24" dev eth0
	ip -n "$ns" addr add "2001:db8::$n/64" dev eth0 nodad
	ip -n "$ns" link set eth0 up
}

# two_containers: $P-br with containers $P-c1 (.1, ::1) and $P-c2 (.2, ::2).
two_containers() {
	bridge "$P-br"
	container "$P-c1" "$P-br" 1
	container "$P-c2" "$P-br" 2
}

# recv_in NAME NS ARGS... and send_in NAME NS ARGS...: an xfer receiver or
# sender in the test cgroup and namespace NS, on $PORT.
recv_in() { xfer_start "$1" "$TEST_CG" "$2" recv "$PORT" "${@:3}"; }
send_in() { xfer_start "$1" "$TEST_CG" "$2" send "$PORT" "${@:3}"; }

# br_capture_start BR: capture the bridge of namespace BR into $TMP/br.pcap.
br_capture_start() { capture_start "$TMP/br.pcap" br0 tcp "$1"; }
br_capture_stop() { capture_stop; }

# br_payload: payload bytes the bridge carried.  Redirected bytes take no
# sequence numbers, so each flow's TCP bytes are the span of its sequence
# ranges ("seq A:B" with -S: absolute), which counts a retransmitted
# segment once and a segment the capture dropped all the same.
br_payload() {
	tcpdump -nn -S -r "$TMP/br.pcap" 2>/dev/null |
		awk 'match($0, / seq [0-9]+:[0-9]+,/) {
			split(substr($0, RSTART + 5, RLENGTH - 6), r, ":")
			flow = $3 " " $5
			if (!(flow in lo) || r[1] < lo[flow]) lo[flow] = r[1]
			if (!(flow in hi) || r[2] > hi[flow]) hi[flow] = r[2]
		}
		END { for (f in lo) sum += hi[f] - lo[f]; print sum + 0 }'
}

# cross_xfer ADDR [ARGS...]: a transfer from c1 to c2's ADDR, 8 MB one way
# and 4 MB back, while the bridge is captured; checks the data (xfer) and
# that what the bridge carried is what the counters say went by TCP.
cross_xfer() {
	local addr=$1

	shift
	br_capture_start "$P-br"
	recv_in r "$P-c2" "$@"
	send_in s "$P-c1" -a "$addr" -B 8000000 -R 4000000
	xfer_finish s r
	br_capture_stop
	echo "bridge payload: $(br_payload) bytes; bytes_passed: $(counter bytes_passed)"
	expect_xfer_split $((8000000 + 4000000 + 24)) 0 s r
	# What crossed the bridge is what came by TCP (expect_xfer_split).
	(($(br_payload) == $(tcp_in s r)))
	(($(counter sockets_inserted) == 2))
	(($(counter collisions) == 0))
}

@test "v4 between two containers on a bridge is redirected, intact, and the bridge carries no payload" {
	two_containers
	load_bypass --cross-netns
	cross_xfer 198.51.100.2 -b 198.51.100.2
}

@test "v6 between two containers on a bridge is redirected, intact, and the bridge carries no payload" {
	two_containers
	load_bypass --cross-netns
	cross_xfer 2001:db8::2 -b 2001:db8::2
}

@test "v4 client to a dual-stack server in another container is redirected, intact" {
	two_containers
	load_bypass --cross-netns
	cross_xfer 198.51.100.2 -b ::
}

@test "without --cross-netns, nothing between containers is redirected" {
	two_containers
	load_bypass
	br_capture_start "$P-br"
	recv_in r "$P-c2" -b ::
	send_in s "$P-c1" -a 198.51.100.2 -B 4000000 -R 1000000
	xfer_finish s r
	br_capture_stop
	echo "bridge payload: $(br_payload) bytes"
	# Both ends are in the map, but neither finds the other.
	(($(counter bytes_redirected) == 0))
	(($(counter bytes_passed) <= 4000000 + 1000000 + 24))	# counter()
	(($(br_payload) == 4000000 + 1000000 + 24))
}

# one_port NS PORT: PORT is the only ephemeral port in NS, so every client
# there binds it: two namespaces then produce identical four-tuples.
one_port() {
	ip netns exec "$1" sysctl -qw net.ipv4.ip_local_port_range="$2 $2"
}

# client_tuple NS PORT: "local peer" of the client socket connected to PORT.
client_tuple() {
	ip netns exec "$1" ss -Htn "( dport = :$2 )" | awk '{ print $4, $5 }'
}

# wait_tuples PORT NS...: until each namespace's client to PORT is
# connected; prints their tuples, one a line.
wait_tuples() {
	local port=$1 ns t out

	shift
	for _ in $(seq 100); do
		out=
		for ns in "$@"; do
			t=$(client_tuple "$ns" "$port")
			[[ -n $t ]] || continue 2
			out+="$t"$'\n'
		done
		printf '%s' "$out"
		return 0
	done
	echo "not all connected" >&2
	return 1
}

@test "loopback in two containers, with the same four-tuple, stays apart with --cross-netns" {
	local a=$P-c1 b=$P-c2 tuples

	two_containers
	one_port "$a" $((PORT + 9))
	one_port "$b" $((PORT + 9))
	load_bypass --cross-netns
	recv_in ra "$a" -Z "$TMP/go"
	recv_in rb "$b" -Z "$TMP/go"
	send_in sa "$a" -B 8000000 -R 4000000 -s 1
	send_in sb "$b" -B 4000000 -R 8000000 -s 2
	tuples=$(wait_tuples "$PORT" "$a" "$b")
	echo "$tuples"
	[[ $(sort -u <<<"$tuples") == "127.0.0.1:$((PORT + 9)) 127.0.0.1:$PORT" ]]
	touch "$TMP/go"
	xfer_finish sa ra sb rb
	(($(counter sockets_inserted) == 4))
	(($(counter collisions) == 0))
	expect_xfer_split $((2 * (12000000 + 24))) 0 sa ra sb rb
}

@test "::1 in two containers, with the same four-tuple, stays apart with --cross-netns" {
	local a=$P-c1 b=$P-c2 tuples

	two_containers
	one_port "$a" $((PORT + 9))
	one_port "$b" $((PORT + 9))
	load_bypass --cross-netns
	recv_in ra "$a" -b ::1 -Z "$TMP/go"
	recv_in rb "$b" -b ::1 -Z "$TMP/go"
	send_in sa "$a" -a ::1 -B 8000000 -R 4000000 -s 1
	send_in sb "$b" -a ::1 -B 4000000 -R 8000000 -s 2
	tuples=$(wait_tuples "$PORT" "$a" "$b")
	echo "$tuples"
	[[ $(sort -u <<<"$tuples") == "[::1]:$((PORT + 9)) [::1]:$PORT" ]]
	touch "$TMP/go"
	xfer_finish sa ra sb rb
	(($(counter sockets_inserted) == 4))
	(($(counter collisions) == 0))
	expect_xfer_split $((2 * (12000000 + 24))) 0 sa ra sb rb
}

@test "two bridges with one subnet, the same four-tuple on both at once, each way: each server gets only its own bytes" {
	local ta tb

	# Two hosts' worth of the same Docker network: 198.51.100.1 and .2
	# on bridge A, and again on bridge B.
	bridge "$P-ba"
	container "$P-a1" "$P-ba" 1
	container "$P-a2" "$P-ba" 2
	bridge "$P-bb"
	container "$P-b1" "$P-bb" 1
	container "$P-b2" "$P-bb" 2
	for ns in "$P-a1" "$P-a2" "$P-b1" "$P-b2"; do
		one_port "$ns" $((PORT + 9))
	done
	load_bypass --cross-netns
	# .1 to .2 on both bridges, and .2 to .1 on both, on another port;
	# the receivers wait for $TMP/go, so that all four are open at once.
	recv_in ra "$P-a2" -b 198.51.100.2 -Z "$TMP/go"
	recv_in rb "$P-b2" -b 198.51.100.2 -Z "$TMP/go"
	xfer_start rA "$TEST_CG" "$P-a1" recv $((PORT + 1)) -b 198.51.100.1 -Z "$TMP/go"
	xfer_start rB "$TEST_CG" "$P-b1" recv $((PORT + 1)) -b 198.51.100.1 -Z "$TMP/go"
	send_in sa "$P-a1" -a 198.51.100.2 -B 8000000 -R 4000000 -s 1
	send_in sb "$P-b1" -a 198.51.100.2 -B 4000000 -R 8000000 -s 2
	xfer_start sA "$TEST_CG" "$P-a2" send $((PORT + 1)) -a 198.51.100.1 -B 6000000 -R 2000000 -s 3
	xfer_start sB "$TEST_CG" "$P-b2" send $((PORT + 1)) -a 198.51.100.1 -B 2000000 -R 6000000 -s 4
	ta=$(wait_tuples "$PORT" "$P-a1" "$P-b1")
	echo "$ta"
	[[ $(sort -u <<<"$ta") == "198.51.100.1:$((PORT + 9)) 198.51.100.2:$PORT" ]]
	tb=$(wait_tuples $((PORT + 1)) "$P-a2" "$P-b2")
	echo "$tb"
	[[ $(sort -u <<<"$tb") == "198.51.100.2:$((PORT + 9)) 198.51.100.1:$((PORT + 1))" ]]
	touch "$TMP/go"
	xfer_finish sa ra sb rb sA rA sB rB
	(($(counter sockets_inserted) == 8))
	(($(counter collisions) == 0))
	expect_xfer_split $((2 * (12000000 + 24) + 2 * (8000000 + 24))) 0 sa ra sb rb sA rA sB rB
}

@test "a socket made ESTABLISHED by TCP_REPAIR is never inserted, across a bridge or on loopback" {
	two_containers
	load_bypass --cross-netns
	# A listener for the tuple, so that a socket that slipped through
	# would have a peer to pair with.
	recv_in r "$P-c2" -b ::
	spawn rep4 ip netns exec "$P-c1" "$TOP/tests/probes/repair" \
		-b 198.51.100.1 -l $((PORT + 5)) -a 198.51.100.2 -p "$PORT"
	spawn rep6 ip netns exec "$P-c1" "$TOP/tests/probes/repair" \
		-b 2001:db8::1 -l $((PORT + 5)) -a 2001:db8::2 -p "$PORT"
	spawn replo ip netns exec "$P-c2" "$TOP/tests/probes/repair" \
		-b 127.0.0.1 -l $((PORT + 5)) -a 127.0.0.1 -p "$PORT"
	for _ in $(seq 100); do
		(($(cat "$TMP"/rep*.out | grep -c '^established$') == 3)) && break
		sleep 0.05
	done
	cat "$TMP"/rep*.out
	(($(cat "$TMP"/rep*.out | grep -c '^established$') == 3))
	(($(counter repair_refused) == 3))
	(($(counter sockets_inserted) == 0))
	(($(map_entries) == 0))
}

# dnat_check TOTAL NAME...: the xfers NAME... carried TOTAL bytes intact, all
# by TCP (their tcp_in; bytes_passed is at most that: counter() says why):
# a DNAT'd connection's two ends do not mirror.
dnat_check() {
	local total=$1

	shift
	xfer_finish "$@"
	echo "redirected=$(counter bytes_redirected) passed=$(counter bytes_passed)"
	(($(counter bytes_redirected) == 0))
	(($(counter bytes_passed) <= total))
	(($(tcp_in "$@") == total))
	(($(counter collisions) == 0))
}

@test "a published port (DNAT on the host, hairpin with MASQUERADE) stays on TCP, intact" {
	two_containers
	# The host's side, as Docker sets it up: the bridge has an address,
	# the host routes, a published port is DNAT'd to the container, and
	# a container that reaches it through the host's address is
	# masqueraded on its way back out of the bridge (the hairpin).
	ip -n "$P-br" addr add 198.51.100.254/24 dev br0
	ip netns exec "$P-br" sysctl -qw net.ipv4.ip_forward=1
	ip netns exec "$P-br" iptables -t nat -A PREROUTING -d 198.51.100.254 -p tcp \
		--dport $((PORT + 8)) -j DNAT --to-destination "198.51.100.2:$PORT"
	ip netns exec "$P-br" iptables -t nat -A POSTROUTING -s 198.51.100.0/24 \
		-d 198.51.100.2 -p tcp --dport "$PORT" -j MASQUERADE
	load_bypass --cross-netns
	recv_in r "$P-c2" -b 198.51.100.2
	xfer_start s "$TEST_CG" "$P-c1" send $((PORT + 8)) -a 198.51.100.254 -B 4000000 -R 1000000
	dnat_check $((4000000 + 1000000 + 24)) s r
	# Both ends were inserted, under keys that do not mirror.
	(($(counter sockets_inserted) == 2))
}

@test "a service address DNAT'd in the client's namespace (kube-proxy's way) stays on TCP, intact" {
	two_containers
	# The service IP is 203.0.113.10:80, rewritten to the server container
	# as the client sends; a route makes the service address reachable.
	ip -n "$P-c1" route add 203.0.113.0/24 dev eth0
	ip netns exec "$P-c1" iptables -t nat -A OUTPUT -d 203.0.113.10 -p tcp \
		--dport 80 -j DNAT --to-destination "198.51.100.2:$PORT"
	load_bypass --cross-netns
	recv_in r "$P-c2" -b 198.51.100.2
	xfer_start s "$TEST_CG" "$P-c1" send 80 -a 203.0.113.10 -B 4000000 -R 1000000
	dnat_check $((4000000 + 1000000 + 24)) s r
	(($(counter sockets_inserted) == 2))
}

@test "a client's namespace deleted while its bytes wait unread in the server: the server reads them all" {
	local total=$((4000000 + 24))

	two_containers
	load_bypass --cross-netns
	# The receiver stops after its first MiB until $TMP/go exists; the
	# rest waits in its queue, redirected.
	recv_in r "$P-c2" -b 198.51.100.2 -Z "$TMP/go"
	send_in s "$P-c1" -a 198.51.100.2 -B 4000000
	# The receiver half-closes at once (it sends nothing back): the
	# sender sends everything, reads EOF and exits, its socket closed.
	xfer_finish s
	(($(counter bytes_redirected) + $(counter bytes_passed) <= total))
	# Then its namespace goes, veth and all.
	ip netns del "$P-c1"
	# The kernel tears the namespace down in a work queue: its veth goes.
	for _ in $(seq 100); do
		ip -n "$P-br" link show v1 >/dev/null 2>&1 || break
		sleep 0.05
	done
	! ip -n "$P-br" link show v1
	touch "$TMP/go"
	xfer_finish r
	# All redirected, but what a fallback sent by TCP (on a small guest,
	# the host guard), as the receiver measured it.
	expect_xfer_split "$total" 0 s r
	(($(map_entries) == 0))
}

# mirror_hex KEY_BYTES_JSON: the mirror of a struct sock_key given as
# bpftool's list of "0x.." bytes, as one hex string: scope (8 bytes), then
# remote_ip and local_ip (16 each), remote_port and local_port, remote_seq
# and local_seq (4 each), swapped as in mirror_key() (bpf_maps.h).
mirror_hex() {
	jq -r '[.[0:8], .[24:40], .[8:24], .[44:48], .[40:44], .[52:56], .[48:52]] |
		flatten | map(ltrimstr("0x")) | join("")' <<<"$1"
}

@test "a key another socket holds is never taken: both stay on TCP, intact, counted" {
	local key total=$((1000000 + 1000000 + 24))

	two_containers
	load_bypass --cross-netns
	# Hold back everything but SYNs to the server: the client becomes
	# established (and inserted) at the SYN-ACK, the server does not.
	ip netns exec "$P-c2" iptables -A INPUT -p tcp --dport "$PORT" ! --syn -j DROP
	recv_in r "$P-c2" -b 198.51.100.2
	send_in s "$P-c1" -a 198.51.100.2 -B 1000000 -R 1000000
	for _ in $(seq 100); do
		(($(map_entries) == 1)) && break
		sleep 0.05
	done
	(($(map_entries) == 1))
	# Meanwhile another socket takes the server's key, as the server of
	# another namespace's connection with the same four-tuple and
	# sequence numbers would.  claim runs outside the test's cgroup.
	key=$(bpftool -j map dump pinned "$SOCKOPS_PIN_DIR/$PIN_MAP" | jq -c '.[0].key')
	: >"$TMP/claim.out"
	"$TOP/tests/probes/claim" -M "$SOCKOPS_PIN_DIR/$PIN_MAP" -k "$(mirror_hex "$key")" \
		>"$TMP/claim.out" 2>&1 &
	PIDS+=($!)
	for _ in $(seq 100); do
		grep -q claimed "$TMP/claim.out" && break
		sleep 0.05
	done
	cat "$TMP/claim.out"
	(($(map_entries) == 2))
	# Let the server be established: it finds its key taken.
	ip netns exec "$P-c2" iptables -D INPUT -p tcp --dport "$PORT" ! --syn -j DROP
	xfer_finish s r
	(($(counter collisions) == 1))
	# Every byte came by TCP, as each end measured.  The server, never
	# inserted, sent unseen; the client's sends are counted passed, at
	# most all of them (a lower bound: docs/how-it-works.md, counters).
	(($(counter bytes_redirected) == 0))
	(($(counter bytes_passed) <= 1000000 + 24))
	(($(tcp_in s r) == total))
	# The key and its mirror are recorded: no socket redirects to either.
	(($(bpftool -j map dump pinned "$SOCKOPS_PIN_DIR/$PIN_COLLIDED" | jq length) == 2))
}

@test "status.sh shows --cross-netns in text, JSON and Prometheus; load.sh switches it in place" {
	load_bypass
	"$TOP/status.sh" | grep -x "netns: *per namespace (no --cross-netns)"
	"$TOP/status.sh" --json | jq -e '.cross_netns == false and .config.cross_netns == 0'
	"$TOP/status.sh" --prom | grep -x 'sockops_cross_netns{pin_dir="[^"]*"} 0'
	load_bypass --cross-netns | grep "already loaded.*across namespaces (--cross-netns)"
	"$TOP/status.sh" | grep -x "netns: *across namespaces, loopback per namespace (--cross-netns)"
	"$TOP/status.sh" --json | jq -e '.cross_netns == true and .config.cross_netns == 1'
	"$TOP/status.sh" --prom | grep -x 'sockops_cross_netns{pin_dir="[^"]*"} 1'
	# Run again without it, it is off again.
	load_bypass
	"$TOP/status.sh" --json | jq -e '.cross_netns == false'
}

# ---------------------------------------------------------------------------
# A real container runtime: podman, from Debian's packages.  No registry is
# reachable, so the image is a root file system built here from busybox,
# with the host's libraries and the tests' probes mounted read-only.  On
# this kind of host (hybrid cgroups, no CAP_SYS_RESOURCE) podman needs runc,
# the cgroupfs manager and limits at or below the current ones.  Each
# container's cgroup is put under the test's cgroup (--cgroup-parent), where
# the bypass is attached.

# podman_ready: skip, saying why, unless podman and runc can run here.
podman_ready() {
	local t

	for t in podman runc; do
		command -v "$t" >/dev/null ||
			skip "$t is not installed (scripts/deps.sh test installs podman, runc, busybox-static)"
	done
	[[ -x /bin/busybox ]] || skip "busybox-static is not installed"
	PODMAN=(podman --runtime runc --cgroup-manager cgroupfs)
	# Installed but unable to run: say why.
	"${PODMAN[@]}" info >"$TMP/podman-info" 2>&1 ||
		skip "podman cannot run here: $(grep -m1 -i error "$TMP/podman-info" || tail -n 1 "$TMP/podman-info")"
	PODNET=sockops$$-$BATS_TEST_NUMBER
	PODS=()
	ROOTFS=$TMP/rootfs
	mkdir -p "$ROOTFS"/{bin,proc,sys,dev,etc,tmp,www} "$TMP/www"
	cp /bin/busybox "$ROOTFS/bin/"
	for t in sh cat httpd wget sha256sum sleep; do
		ln -s busybox "$ROOTFS/bin/$t"
	done
	# Its network (make vmtest puts a tmpfs over /etc/cni/net.d, which
	# is the host's and read-only there).
	"${PODMAN[@]}" network create --subnet 198.51.100.0/24 "$PODNET" \
		>"$TMP/podman-net" 2>&1 || {
		PODNET=
		skip "podman cannot create a network here: $(tail -n 1 "$TMP/podman-net")"
	}
}

# pod_run NAME IP CMD...: a container NAME at IP on our network, in the
# background, in a cgroup under the test's.
pod_run() {
	local name=$1-$$-$BATS_TEST_NUMBER ip=$2 cg=${TEST_CG#"$CG_ROOT"}

	shift 2
	PODS+=("$name")
	"${PODMAN[@]}" run -d --name "$name" --network "$PODNET" --ip "$ip" \
		--cgroup-parent "$cg" \
		--ulimit nofile=1024:1024 --ulimit nproc=1000:1000 \
		-v /lib:/lib:ro -v /lib64:/lib64:ro -v /usr/lib:/usr/lib:ro \
		-v "$TOP/tests/probes:/probes:ro" -v "$TMP/www:/www:ro" \
		--rootfs "$ROOTFS" "$@" >/dev/null
}

# pod_wait NAME: wait until container NAME exits; prints its output and
# returns its exit code.
pod_wait() {
	local name=$1-$$-$BATS_TEST_NUMBER rc

	rc=$("${PODMAN[@]}" wait "$name")
	"${PODMAN[@]}" logs "$name"
	return "$rc"
}

podman_teardown() {
	local name

	for name in "${PODS[@]}"; do
		"${PODMAN[@]}" rm -f -t 0 "$name" >/dev/null 2>&1 || true
	done
	[[ -z ${PODNET:-} ]] || "${PODMAN[@]}" network rm -f "$PODNET" >/dev/null 2>&1 || true
	# runc made the cgroup parent in every cgroup v1 hierarchy too (a
	# hybrid host): empty now, removed children first.
	[[ -z ${PODNET:-} ]] || for mnt in $(findmnt -n -t cgroup -o TARGET); do
		[[ -d $mnt${TEST_CG#"$CG_ROOT"} ]] || continue
		find "$mnt${TEST_CG#"$CG_ROOT"}" -depth -type d -exec rmdir {} + ||
			echo "teardown: could not remove $mnt${TEST_CG#"$CG_ROOT"}" >&2
	done
}

teardown() {
	podman_teardown
	common_teardown
}

@test "podman: two containers on a user-defined bridge network, a checksummed transfer, redirected" {
	podman_ready
	load_bypass --cross-netns
	pod_run srv 198.51.100.10 /probes/xfer recv -b 198.51.100.10 -p "$PORT"
	for _ in $(seq 100); do
		"${PODMAN[@]}" logs "srv-$$-$BATS_TEST_NUMBER" 2>&1 | grep -q listening && break
		sleep 0.1
	done
	pod_run cli 198.51.100.11 /probes/xfer send -a 198.51.100.10 -p "$PORT" \
		-B 16000000 -R 4000000
	pod_wait cli >"$TMP/cli.out"
	pod_wait srv >"$TMP/srv.out"
	cat "$TMP/cli.out" "$TMP/srv.out"
	grep -Eq "conns=1 ok=1 bad=0 " "$TMP/cli.out"
	grep -Eq "conns=1 ok=1 bad=0 " "$TMP/srv.out"
	cp "$TMP/cli.out" "$TMP/s.out"
	cp "$TMP/srv.out" "$TMP/r.out"
	expect_xfer_split $((16000000 + 4000000 + 24)) 0 s r
	(($(counter sockets_inserted) == 2))
}

@test "podman: a real server (busybox httpd) serves a file to another container, redirected, intact" {
	local sum size=$((32 << 20))

	podman_ready
	head -c "$size" /dev/urandom >"$TMP/www/file"
	sum=$(sha256sum <"$TMP/www/file" | cut -d' ' -f1)
	load_bypass --cross-netns
	pod_run web 198.51.100.10 httpd -f -p "198.51.100.10:$PORT" -h /www
	sleep 0.5
	pod_run get 198.51.100.11 sh -c \
		"wget -q -O - http://198.51.100.10:$PORT/file | sha256sum"
	pod_wait get >"$TMP/get.out"
	cat "$TMP/get.out"
	[[ $(cut -d' ' -f1 "$TMP/get.out") == "$sum" ]]
	"$TOP/status.sh" | grep -E "on TCP|bytes_|fallback_|return_"
	# Both ends were inserted, and every byte of the response went by the
	# bypass, or by TCP while wget, which writes into a pipe, was more
	# than the queue bound behind, and for no other reason.  The bound
	# counts 1 KiB per message beside its bytes (MSG_OVERHEAD), and httpd
	# writes more than 1 KiB at a time: at least half the bound's start
	# went by the bypass before any fallback.
	(($(counter sockets_inserted) == 2))
	(($(counter bytes_redirected) + $(counter bytes_passed) >= size))
	echo "average redirected message: $(($(counter bytes_redirected) / $(counter msgs_redirected))) bytes"
	(($(counter bytes_redirected) / $(counter msgs_redirected) > 1024))
	(($(counter bytes_redirected) >= $("$TOP/status.sh" --json | jq .config.queue_start) / 2))
	(($(fallbacks_for_memory) == $(counter fallback_queue)))
	(($(counter fallback_no_peer) == 0))
}
