#!/usr/bin/env bats
# SPDX-License-Identifier: GPL-2.0
#
# Real servers from the distribution's packages, through the bypass: nginx,
# PostgreSQL, Redis, rsync and HAProxy, each in the test's own cgroup with
# the bypass attached there.  Each test checks the data with a checksum or
# the application's own verification, and the counters that the bypass
# carried it: bytes_redirected grows by at least the payload.
#
# Every server runs in the foreground as a child of the test (spawn), is
# stopped by PID, and keeps all its files (config, data, sockets, logs) in
# the test's temporary directory.  "make deps-test" installs the packages.
# One line per application goes to the TAP output ("# ..."): what moved and
# what the counters said.
#
# A client's first bytes may go by TCP, and with them what it sends until
# the server has read them: when the server's end is established after
# connect() returns (the listener's lock was held), bpf_redir finds no peer
# and sends by TCP until the peer is in the map and has read every TCP byte
# (struct peer_info, docs/how-it-works.md "Flow control").  The server's replies,
# sent once both ends are in the map, are always redirected.  So the
# server-to-client bytes are checked against bytes_redirected, and the
# client's against bytes_redirected + bytes_passed (everything the bypass's
# sk_msg program saw).

BASE_PORT=30400
load helpers

readonly MiB=$((1024 * 1024))

setup() {
	common_setup
	STOPS=()	# "PID SIGNAL": servers to stop gracefully, in order
}

teardown() {
	local s

	for s in "${STOPS[@]}"; do
		stop_server $s
	done
	common_teardown
}

# need_apps CMD...: fail, naming the package, unless every command exists.
need_apps() {
	local c missing=()

	for c in "$@"; do
		command -v "$c" >/dev/null 2>&1 || missing+=("$c")
	done
	((${#missing[@]} == 0)) && return 0
	echo "missing: ${missing[*]}; install them with: sudo make deps-test" >&2
	return 1
}

# report LINE: one line in the TAP output, passing or not.
report() {
	echo "# $*" >&3
}

# mark, then carried WHAT MIN: since the mark, the bypass carried at least
# MIN bytes, all redirected; or a connection fell back to TCP (a reader
# fell its queue bound behind on a slow or small host, or a client raced
# its server: helpers.bash) and the bypass redirected the rest.  After a
# fallback bytes_passed may fall short: when TCP refuses a passed message
# (EAGAIN on a full send buffer, which non-blocking servers meet),
# tcp_bpf_send_verdict() keeps the pass verdict in psock->eval, and the next
# send goes out by TCP without running bpf_redir (6.1 to 6.18 alike).
mark() {
	MARK_R=$(counter bytes_redirected)
	MARK_P=$(counter bytes_passed)
	MARK_L=$(fell_back)
}

fell_back() {
	echo $(($(fallbacks_for_memory) + $(counter fallback_no_peer)))
}

carried() {
	local r p l

	r=$(($(counter bytes_redirected) - MARK_R))
	p=$(($(counter bytes_passed) - MARK_P))
	l=$(($(fell_back) - MARK_L))
	report "$1: bytes_redirected +$r, bytes_passed +$p, fallbacks +$l"
	((r >= $2 || (l > 0 && r > 0)))
}

# stop_server PID SIGNAL: stop a server the way its manual says, and wait
# for it (and so for its children's cleanup) up to 10 s.
stop_server() {
	local pid=$1 sig=$2

	kill -0 "$pid" 2>/dev/null || return 0
	kill "-$sig" "$pid" 2>/dev/null || true
	for _ in $(seq 100); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	wait "$pid" 2>/dev/null || true
}

# spawn_server NAME SIGNAL CMD...: spawn, and stop with SIGNAL at teardown.
spawn_server() {
	local name=$1 sig=$2

	shift 2
	spawn "$name" "$@"
	STOPS=("$LAST_PID $sig" "${STOPS[@]}")
}

# random_file PATH SIZE: SIZE bytes (head -c units) of random data.
random_file() {
	head -c "$2" /dev/urandom >"$1"
}

sha() {
	sha256sum <"$1" | cut -d' ' -f1
}

# sum_sizes DIR [SKIP]: bytes in the regular files under DIR, not counting
# those under DIR/SKIP.
sum_sizes() {
	local skip=()

	[[ -z ${2:-} ]] || skip=(-path "$1/$2" -prune -o)
	find "$1" "${skip[@]}" -type f -printf '%s\n' |
		awk '{ n += $1 } END { print n + 0 }'
}

# ---------------------------------------------------------------- nginx

# nginx_start PORT DOCROOT: nginx on 127.0.0.1:PORT and [::1]:PORT, serving
# DOCROOT with sendfile, in the foreground with one worker.
nginx_start() {
	local port=$1 root=$2 d=$TMP/nginx

	mkdir -p "$d"
	cat >"$d/nginx.conf" <<-EOF
	daemon off;
	master_process on;
	worker_processes 1;
	user root;
	pid $d/nginx.pid;
	error_log stderr warn;
	events { worker_connections 64; }
	http {
		access_log off;
		sendfile on;
		client_body_temp_path $d/body;
		proxy_temp_path $d/proxy;
		fastcgi_temp_path $d/fastcgi;
		uwsgi_temp_path $d/uwsgi;
		scgi_temp_path $d/scgi;
		server {
			listen 127.0.0.1:$port;
			listen [::1]:$port;
			root $root;
		}
	}
	EOF
	# -e (1.19.5 and later): its startup log too goes to stderr, not to
	# /var/log/nginx.
	local early=()
	nginx -h 2>&1 | grep -q -- "^ *-e " && early=(-e stderr)
	spawn_server nginx QUIT nginx "${early[@]}" -p "$d" -c "$d/nginx.conf"
	wait_port "$port"
}

@test "nginx: a 64 MiB file by sendfile over 127.0.0.1 and ::1 arrives intact, redirected" {
	local addr size

	need_apps nginx curl
	mkdir "$TMP/www"
	random_file "$TMP/www/big.bin" 64M
	size=$(stat -c %s "$TMP/www/big.bin")
	load_bypass --quiet
	nginx_start "$PORT" "$TMP/www"
	for addr in 127.0.0.1 '[::1]'; do
		mark
		in_cg curl -sS -g -o "$TMP/got.bin" "http://$addr:$PORT/big.bin"
		report "nginx $addr: $(stat -c %s "$TMP/got.bin") bytes, sha256 $(sha "$TMP/got.bin" | head -c 12)"
		[[ $(sha "$TMP/got.bin") == "$(sha "$TMP/www/big.bin")" ]]
		carried "nginx $addr" "$size"
	done
	(($(counter sockets_inserted) == 4))
}

# ----------------------------------------------------------- PostgreSQL

# pg_bindir: the newest installed PostgreSQL's bin directory.
pg_bindir() {
	local d

	d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
	[[ -x $d/initdb ]] || { echo "no PostgreSQL server; run: sudo make deps-test" >&2; return 1; }
	echo "$d"
}

# as_pg CMD...: run CMD as the postgres user (the server refuses root), in
# the test cgroup.
as_pg() {
	in_cg setpriv --reuid postgres --regid postgres --init-groups "$@"
}

@test "postgresql: pgbench -c 4 -T 5 keeps its balances, pg_basebackup verifies, all redirected" {
	local pg d=$TMP/pg p before before_tcp txns moved moved_tcp a t b h n

	pg=$(pg_bindir)
	need_apps setpriv
	getent passwd postgres >/dev/null
	# A private cluster in the test's directory, which the postgres user
	# must be able to reach: let it through the (mode 700) bats dirs.
	mkdir "$d"
	chown postgres: "$d"
	p=$TMP
	while [[ $p == "$BATS_RUN_TMPDIR"* ]]; do
		chmod o+x "$p"
		p=$(dirname "$p")
	done
	setpriv --reuid postgres --regid postgres --init-groups \
		"$pg/initdb" -D "$d/data" -U postgres --auth=trust -E UTF8 \
		--no-sync --no-instructions >"$TMP/initdb.out"
	load_bypass --quiet
	# Fast shutdown on SIGINT; it removes its shared memory and socket.
	spawn_server postgres INT setpriv --reuid postgres --regid postgres \
		--init-groups "$pg/postgres" -D "$d/data" -p "$PORT" \
		-c listen_addresses=127.0.0.1 -c unix_socket_directories="$d" \
		-c fsync=off
	wait_port "$PORT"
	# It listens before it accepts: until its startup ends, a client gets
	# "the database system is starting up".
	for _ in $(seq 100); do
		as_pg "$pg/pg_isready" -q -h 127.0.0.1 -p "$PORT" && break
		sleep 0.1
	done
	as_pg "$pg/pgbench" -h 127.0.0.1 -p "$PORT" -U postgres -i -s 2 -q postgres \
		>"$TMP/pgbench-init.out" 2>&1 || { cat "$TMP/pgbench-init.out"; false; }

	before=$(counter msgs_redirected)
	before_tcp=$(counter msgs_passed)
	as_pg "$pg/pgbench" -h 127.0.0.1 -p "$PORT" -U postgres -c 4 -T 5 postgres \
		>"$TMP/pgbench.out" 2>&1
	cat "$TMP/pgbench.out"
	txns=$(awk '/number of transactions actually processed/ { print $NF }' "$TMP/pgbench.out")
	moved=$(($(counter msgs_redirected) - before))
	moved_tcp=$(($(counter msgs_passed) - before_tcp))
	# TPC-B: each transaction adds one delta to an account, a teller and a
	# branch, and logs it in history.  The four sums must agree.
	as_pg "$pg/psql" -h 127.0.0.1 -p "$PORT" -U postgres -Atc "
		select (select sum(abalance) from pgbench_accounts),
		       (select sum(tbalance) from pgbench_tellers),
		       (select sum(bbalance) from pgbench_branches),
		       (select sum(delta) from pgbench_history),
		       (select count(*) from pgbench_history)" postgres >"$TMP/sums"
	report "postgresql pgbench: $txns transactions, $(grep -o 'tps = [0-9.]*' "$TMP/pgbench.out"), sums $(cat "$TMP/sums"), msgs_redirected +$moved, msgs_passed +$moved_tcp"
	# PostgreSQL 15 and later count failed transactions.
	! grep -q "number of failed transactions: [1-9]" "$TMP/pgbench.out"
	((txns > 0))
	IFS='|' read -r a t b h n <"$TMP/sums"
	[[ $a == "$t" && $t == "$b" && $b == "$h" && $n == "$txns" ]]
	# Seven statements a transaction, each a request and a reply: the
	# replies redirected, the requests too unless they fell back to TCP.
	((moved >= 7 * txns && moved + moved_tcp >= 14 * txns))

	mark
	as_pg "$pg/pg_basebackup" -h 127.0.0.1 -p "$PORT" -U postgres \
		-D "$d/backup" -X stream -c fast
	as_pg "$pg/pg_verifybackup" "$d/backup" | tee "$TMP/verify.out"
	report "postgresql pg_basebackup: $(sum_sizes "$d/backup") bytes in files, $(cat "$TMP/verify.out")"
	grep -qx "backup successfully verified" "$TMP/verify.out"
	# pg_wal is not what crossed the wire: pg_basebackup pads each WAL
	# segment it streams to 16 MiB, and pgbench above filled less than one
	# on a slow host.  The other files did cross it, whole.
	carried "postgresql pg_basebackup" "$(sum_sizes "$d/backup" pg_wal)"
}

# ---------------------------------------------------------------- Redis

# redis_start NAME PORT ARGS...: redis-server in the foreground on
# 127.0.0.1:PORT, no persistence, files in $TMP/NAME.
redis_start() {
	local name=$1 port=$2 debug=()

	shift 2
	mkdir "$TMP/$name"
	# Redis 7 refuses DEBUG unless told; Redis 6 knows no such option.
	redis-server --version | grep -q " v=[0-6]\." ||
		debug=(--enable-debug-command local)
	spawn_server "$name" TERM redis-server --port "$port" --bind 127.0.0.1 \
		--dir "$TMP/$name" --save '' --appendonly no --logfile '' \
		--daemonize no "${debug[@]}" "$@"
	wait_port "$port"
}

rcli() {
	in_cg redis-cli -h 127.0.0.1 "$@"
}

@test "redis: a replica's full sync copies every key, redirected" {
	local primary=$PORT replica=$((PORT + 1)) payload

	need_apps redis-server redis-cli
	load_bypass --quiet
	# Stored uncompressed, so the RDB on the wire is at least the values.
	redis_start primary "$primary" --rdbcompression no \
		--repl-diskless-sync-delay 0
	[[ $(rcli -p "$primary" DEBUG POPULATE 20000 key 2560) == OK ]]
	random_file "$TMP/blob" 4M
	rcli -p "$primary" -x SET blob <"$TMP/blob" >/dev/null
	payload=$((20000 * 2560 + 4 * MiB))

	mark
	redis_start replica "$replica" --replicaof 127.0.0.1 "$primary"
	for _ in $(seq 300); do
		rcli -p "$replica" INFO replication | grep -q "master_link_status:up" && break
		sleep 0.1
	done
	rcli -p "$replica" INFO replication | tr -d '\r' | tee "$TMP/repl"
	grep -qx "master_link_status:up" "$TMP/repl"
	local dp dr
	dp=$(rcli -p "$primary" DEBUG DIGEST)
	dr=$(rcli -p "$replica" DEBUG DIGEST)
	report "redis: $(rcli -p "$replica" DBSIZE) keys, digest primary $dp replica $dr (values: $payload bytes)"
	[[ $dp == "$dr" && $dp != 0000000000000000000000000000000000000000 ]]
	[[ $(rcli -p "$replica" DBSIZE) == 20001 ]]
	in_cg redis-cli -h 127.0.0.1 -p "$replica" GET blob | head -c 4M | cmp - "$TMP/blob"
	carried "redis full sync" "$payload"
}

# ---------------------------------------------------------------- rsync

@test "rsync: a daemon's pull, push and delta push arrive with matching checksums, redirected" {
	local i size

	need_apps rsync
	mkdir "$TMP/src" "$TMP/pull" "$TMP/push"
	for i in $(seq 16); do
		random_file "$TMP/src/f$i" $((i * 256))K
	done
	size=$(sum_sizes "$TMP/src")
	cat >"$TMP/rsyncd.conf" <<-EOF
	pid file = $TMP/rsyncd.pid
	use chroot = no
	uid = root
	gid = root
	[src]
		path = $TMP/src
		read only = yes
	[push]
		path = $TMP/push
		read only = no
	EOF
	load_bypass --quiet
	spawn_server rsyncd TERM rsync --daemon --no-detach \
		--config="$TMP/rsyncd.conf" --address=127.0.0.1 --port="$PORT" \
		--log-file="$TMP/rsyncd.log"
	wait_port "$PORT"

	# Pull: the daemon sends.  Push: the client sends.
	mark
	in_cg rsync -a "rsync://127.0.0.1:$PORT/src/" "$TMP/pull/"
	carried "rsync pull" "$size"
	mark
	in_cg rsync -a "$TMP/pull/" "rsync://127.0.0.1:$PORT/push/"
	carried "rsync push" "$size"
	(cd "$TMP/src" && sha256sum f*) >"$TMP/sums.src"
	(cd "$TMP/pull" && sha256sum -c --quiet "$TMP/sums.src")
	(cd "$TMP/push" && sha256sum -c --quiet "$TMP/sums.src")
	report "rsync: pull and push of $size bytes in 16 files, sha256 ok"

	# Delta: change 4 KiB in the middle of the biggest file; rsync sends
	# block checksums one way and the literal data the other.
	dd if=/dev/urandom of="$TMP/pull/f16" bs=4K count=1 seek=100 conv=notrunc status=none
	in_cg rsync -a --stats "$TMP/pull/" "rsync://127.0.0.1:$PORT/push/" >"$TMP/delta.out"
	cmp "$TMP/pull/f16" "$TMP/push/f16"
	report "rsync delta: $(grep -E '^(Literal|Matched) data' "$TMP/delta.out" | tr '\n' ' ')"
	grep -q "^Matched data: [1-9]" "$TMP/delta.out"
}

# -------------------------------------------------------------- HAProxy

# haproxy_start FRONT BACK: HAProxy in HTTP mode on 127.0.0.1:FRONT in
# front of 127.0.0.1:BACK, moving bodies with splice(2) both ways.  One
# thread, so that its CPU time reads as one event loop's.  The stats
# socket, on FRONT + 1, is for "show info".
haproxy_start() {
	cat >"$TMP/haproxy.cfg" <<-EOF
	global
		nbthread 1
		stats socket ipv4@127.0.0.1:$(($1 + 1)) level user
	defaults
		mode http
		timeout connect 5s
		timeout client 30s
		timeout server 30s
		option splice-request
		option splice-response
	frontend front
		bind 127.0.0.1:$1
		default_backend back
	backend back
		server nginx 127.0.0.1:$2
	EOF
	# -db: foreground; SIGUSR1 is its graceful stop.
	spawn_server haproxy USR1 haproxy -db -f "$TMP/haproxy.cfg"
	HAPROXY_PID=$LAST_PID
	wait_port "$1"
}

# haproxy_info FIELD: a field of "show info", from the stats socket.
haproxy_info() {
	local line

	exec {fd}<>"/dev/tcp/127.0.0.1/$((FRONT + 1))"
	echo "show info" >&$fd
	while read -r -t 5 line <&$fd; do
		[[ $line == "$1: "* ]] && echo "${line#*: }"
	done
	exec {fd}>&-
}

# cpu_ticks PID: user + system CPU time of PID, in clock ticks.
cpu_ticks() {
	awk '{ print $14 + $15 }' "/proc/$1/stat"
}

# runnable_ns PID: how long PID's main thread has been running or waiting
# for a CPU (schedstat), in ns.  Asleep, in epoll_wait() say, it adds none;
# spinning, it adds the wall-clock time however busy the host is.
runnable_ns() {
	local run wait _

	read -r run wait _ <"/proc/$1/schedstat"
	echo $((run + wait))
}

@test "haproxy with splice-request/response: with --skip-ports on its ports, the file arrives intact" {
	local back=$PORT rc=0 skipped inserted redirected pipes

	FRONT=$((PORT + 2))
	need_apps haproxy nginx curl
	mkdir "$TMP/www"
	random_file "$TMP/www/big.bin" 16M
	load_bypass --quiet --skip-ports "$FRONT,$back"
	nginx_start "$back" "$TMP/www"
	haproxy_start "$FRONT" "$back"

	in_cg curl -sS --max-time 60 -o "$TMP/got.bin" "http://127.0.0.1:$FRONT/big.bin" || rc=$?
	skipped=$(counter sockets_skipped_port)
	inserted=$(counter sockets_inserted)
	redirected=$(counter bytes_redirected)
	# After the counters: the stats connection, from outside the test
	# cgroup, is not in the skip list.
	pipes=$(($(haproxy_info PipesUsed) + $(haproxy_info PipesFree)))
	report "haproxy, ports skipped: curl exit $rc, $(stat -c %s "$TMP/got.bin") bytes, sha256 $(sha "$TMP/got.bin" | head -c 12), sockets_skipped_port $skipped, sockets_inserted $inserted, bytes_redirected $redirected, haproxy pipes $pipes"
	# A bypass attached to the root cgroup by someone else would take
	# these connections all the same: show it.
	((rc == 0)) || bpftool cgroup show "$CG_ROOT"
	((rc == 0))
	[[ $(sha "$TMP/got.bin") == "$(sha "$TMP/www/big.bin")" ]]
	# curl-haproxy and haproxy-nginx: four sockets, all left on TCP.
	((skipped == 4 && inserted == 0 && redirected == 0))
	# And HAProxy did splice: it allocated pipes.
	((pipes > 0))
}

@test "haproxy with splice-request/response: without --skip-ports it spins and moves nothing (bounded)" {
	local back=$PORT t0 t1 r0 r1 w0 w1 hz got rc=0 eagain calls runnable

	FRONT=$((PORT + 2))
	need_apps haproxy nginx curl strace
	mkdir "$TMP/www"
	random_file "$TMP/www/big.bin" 16M
	# A bound larger than the file: nginx's bytes stay in HAProxy's psock.
	# Past the bound they would go by TCP, and splice() would read those
	# ahead of the stuck ones: a hole (docs/semantics.md, "splice()").
	load_bypass --quiet --max-queue 64M
	nginx_start "$back" "$TMP/www"
	haproxy_start "$FRONT" "$back"

	spawn curl curl -sS --max-time 10 -o "$TMP/got.bin" "http://127.0.0.1:$FRONT/big.bin"
	local curl_pid=$LAST_PID
	# Once the first bytes are in, the rest is stuck.
	for _ in $(seq 50); do
		[[ -s $TMP/got.bin ]] && break
		sleep 0.1
	done
	sleep 0.5
	# Two seconds of HAProxy's CPU time, then two under strace: splice()
	# fails with EAGAIN on the backend socket, epoll_wait() says it is
	# readable again (sk_msg_is_readable() sees the psock's queue).
	hz=$(getconf CLK_TCK)
	t0=$(cpu_ticks "$HAPROXY_PID")
	r0=$(runnable_ns "$HAPROXY_PID")
	w0=$(date +%s%N)
	sleep 2
	t1=$(cpu_ticks "$HAPROXY_PID")
	r1=$(runnable_ns "$HAPROXY_PID")
	w1=$(date +%s%N)
	runnable=$(((r1 - r0) * 100 / (w1 - w0)))
	timeout -s INT 2 strace -c -f -e trace=splice,epoll_wait -p "$HAPROXY_PID" \
		-o "$TMP/strace.out" || true
	cat "$TMP/strace.out"
	wait "$curl_pid" || rc=$?
	got=$(stat -c %s "$TMP/got.bin" 2>/dev/null || echo 0)
	read -r calls eagain < <(awk '$NF == "splice" { print $(NF - 2), $(NF - 1) }' "$TMP/strace.out")
	report "haproxy, no skip: curl exit $rc after 10 s with $got of $(stat -c %s "$TMP/www/big.bin") bytes; haproxy over 2 s: CPU $(((t1 - t0) * 100 / hz / 2))%, runnable $runnable% (host load $(cut -d' ' -f1 /proc/loadavg)); splice $calls calls, $eagain EAGAIN in 2 s under strace; bytes_redirected $(counter bytes_redirected)"
	# curl timed out (28) with part of the file, and what it got is the
	# file's start: stuck, not corrupted.
	((rc == 28))
	((got < $(stat -c %s "$TMP/www/big.bin")))
	cmp -n "$got" "$TMP/got.bin" "$TMP/www/big.bin"
	# The bytes left nginx through the bypass and sit in HAProxy's psock.
	(($(counter bytes_redirected) > got))
	# The busy loop: every splice failed, many times a second, and the
	# event loop, which should sleep in epoll_wait(), never slept: it ran
	# or waited for a CPU nearly all the time (on a busy host it gets
	# little CPU, but is runnable all the same).
	((eagain == calls && eagain >= 100))
	((runnable >= 50))
}
