// SPDX-License-Identifier: GPL-2.0
/*
 * sockprobe_map.c - the sockhash itself, with the bypass loaded and its map
 * pinned (-M): what deleting a socket does to the bytes queued on it, and a
 * peer inserted after its client's first bytes went by TCP.  Not in "all":
 * run by name.
 */
#include <arpa/inet.h>
#include <linux/bpf.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "bpf_sockops.h"
#include "sock_key.h"
#include "sockprobe.h"

/* --- the sockhash: what removing a socket does to its queued bytes ------- */

/*
 * The address part of the key bpf_sockops stored this socket under (see
 * bpf_sockops.h), its scope as without --cross-netns; the initial sequence
 * numbers are not known here.
 */
static void sock_key_of(int fd, struct sock_key *key)
{
	struct sockaddr_in6 a[2];
	__u64 netns;
	socklen_t len = sizeof(a[0]), clen = sizeof(netns);
	__u32 *ip[2] = { key->local_ip, key->remote_ip };

	memset(key, 0, sizeof(*key));
	memset(a, 0, sizeof(a));
	if (getsockname(fd, (struct sockaddr *)&a[0], &len) ||
	    getpeername(fd, (struct sockaddr *)&a[1], &(socklen_t){ sizeof(a[1]) }) ||
	    getsockopt(fd, SOL_SOCKET, SO_NETNS_COOKIE, &netns, &clen))
		die("%s: socket addresses", probe_name);
	for (int i = 0; i < 2; i++) {
		if (a[i].sin6_family == AF_INET6) {
			memcpy(ip[i], &a[i].sin6_addr, 16);
		} else {
			/* v4-mapped ::ffff:a.b.c.d, network byte order. */
			ip[i][2] = htonl(0x0000ffff);
			ip[i][3] = ((struct sockaddr_in *)&a[i])->sin_addr.s_addr;
		}
	}
	/* Ports in host byte order; sin_port and sin6_port share an offset. */
	key->local_port = ntohs(a[0].sin6_port);
	key->remote_port = ntohs(a[1].sin6_port);
	key->scope = sock_key_scope(key, netns, 0);
}

static bool same_tuple(const struct sock_key *a, const struct sock_key *b)
{
	return a->scope == b->scope && a->local_port == b->local_port &&
	       a->remote_port == b->remote_port &&
	       !memcmp(a->local_ip, b->local_ip, sizeof(a->local_ip)) &&
	       !memcmp(a->remote_ip, b->remote_ip, sizeof(a->remote_ip));
}

static long sys_bpf(int cmd, union bpf_attr *attr)
{
	return syscall(SYS_bpf, cmd, attr, sizeof(*attr));
}

/* The pinned sockhash (-M), opened by its path in bpffs. */
static int map_open(void)
{
	union bpf_attr attr = {};
	int map;

	if (!map_pin)
		die("%s needs -M PINNED_SOCKHASH", probe_name);
	attr.pathname = (uintptr_t)map_pin;
	map = sys_bpf(BPF_OBJ_GET, &attr);
	if (map < 0)
		die("%s: open %s", probe_name, map_pin);
	return map;
}

/*
 * Find the key fd is stored under, by its address part: walk the keys
 * (BPF_MAP_GET_NEXT_KEY with no key gives the first).  0, or -1 with errno
 * ENOENT when no key matches.
 */
static int map_find(int map, int fd, struct sock_key *key)
{
	struct sock_key want, next;
	union bpf_attr attr;
	bool first = true;

	sock_key_of(fd, &want);
	for (;;) {
		memset(&attr, 0, sizeof(attr));
		attr.map_fd = map;
		attr.key = first ? 0 : (uintptr_t)key;
		attr.next_key = (uintptr_t)&next;
		if (sys_bpf(BPF_MAP_GET_NEXT_KEY, &attr))
			return -1;
		first = false;
		*key = next;
		if (same_tuple(key, &want))
			return 0;
	}
}

/* Delete fd's entry from the pinned sockhash. */
static int map_delete(int fd)
{
	union bpf_attr attr = {};
	struct sock_key key;
	int map = map_open(), ret;

	ret = map_find(map, fd, &key);
	if (!ret) {
		attr.map_fd = map;
		attr.key = (uintptr_t)&key;
		ret = sys_bpf(BPF_MAP_DELETE_ELEM, &attr);
	}
	close(map);
	return ret;
}

/*
 * Put srv into the pinned sockhash under the key bpf_sockops would have
 * given it: the mirror of its peer cli's key.  Only cli's entry knows the
 * initial sequence numbers, so the key is built from it.  The value of a
 * sockhash update from user space is the socket's file descriptor.
 */
static int map_insert_peer(int cli, int srv)
{
	struct sock_key ck, key;
	union bpf_attr attr = {};
	__u64 value = srv;
	int map = map_open(), ret;

	ret = map_find(map, cli, &ck);
	if (!ret) {
		key.scope = ck.scope;
		memcpy(key.local_ip, ck.remote_ip, sizeof(key.local_ip));
		memcpy(key.remote_ip, ck.local_ip, sizeof(key.remote_ip));
		key.local_port = ck.remote_port;
		key.remote_port = ck.local_port;
		key.local_seq = ck.remote_seq;
		key.remote_seq = ck.local_seq;
		attr.map_fd = map;
		attr.key = (uintptr_t)&key;
		attr.value = (uintptr_t)&value;
		attr.flags = BPF_NOEXIST;
		ret = sys_bpf(BPF_MAP_UPDATE_ELEM, &attr);
	}
	close(map);
	return ret;
}

/*
 * Bytes wait in the receiver's psock queue; then its entry is deleted from
 * the sockhash (-M), as a sock_ops program deleting it on a state change
 * would.  The kernel drops the psock (sk_psock_drop()) and frees the queue
 * (sk_psock_destroy() -> __sk_psock_purge_ingress_msg()): the bytes are
 * gone.  Later bytes come by TCP.
 */
static void probe_delete_queued(void)
{
	struct pair p;
	struct stream tx = { .seed = 34 }, rx = { .seed = 34 };

	pair_open(&p);
	send_pat(p.cli, &tx, 1000, 0);
	wait_inq(p.srv, 1000);
	add("queued=%d", inq(p.srv));
	add("delete=%s", R(map_delete(p.srv)));
	add("inq_after=%d", inq(p.srv));
	add("recv_after=%s", R(recv_pat(p.srv, &rx, 4096, MSG_DONTWAIT)));
	add("lost=%llu", (unsigned long long)(tx.off - rx.off));
	/* The next bytes, checked at their own offset, come by TCP. */
	rx.off = tx.off;
	send_pat(p.cli, &tx, 10, 0);
	wait_inq(p.srv, 10);
	add("later=%s", R(recv_pat(p.srv, &rx, 4096, MSG_DONTWAIT)));
	add_data();
	pair_close(&p);
}

/* --- the sockhash: a peer that appears after the first bytes ------------ */

#define LATE_CHUNK	1000

/* How 2 * LATE_CHUNK received bytes compare with chunk A then chunk B. */
static const char *late_order(const unsigned char *got, size_t n, uint32_t seed)
{
	unsigned char exp[2 * LATE_CHUNK];

	if (n != sizeof(exp))
		return "SHORT";
	pattern(seed, 0, exp, sizeof(exp));
	if (!memcmp(got, exp, sizeof(exp)))
		return "ok";
	if (!memcmp(got, exp + LATE_CHUNK, LATE_CHUNK) &&
	    !memcmp(got + LATE_CHUNK, exp, LATE_CHUNK))
		return "REORDERED";
	return "BAD";
}

/*
 * The client is in the sockhash, its peer is not yet when chunk A is sent:
 * A misses and goes by TCP, and waits, unread, in the server's
 * sk_receive_queue.  Then the server is put in the sockhash (-M, from here)
 * and the client sends chunk B.  Were B redirected, it would wait in the
 * server's psock queue, which tcp_bpf_recvmsg() reads first: B before A.
 * bpf_redir finds the peer but sees A unread, and sends B by TCP too, behind
 * A.  Once the server has read both and they are acknowledged, chunk C
 * comes back to the bypass: path is C's.
 *
 * The listener's SO_RCVLOWAT of 2, inherited by the accepted socket, makes
 * bpf_sockops leave the server out of the sockhash (sockets_skipped); the
 * mark is back to 1 before any byte is read.  The counters see exactly
 * three client sends, A and B by TCP, C by the bypass, and no server send.
 */
static void probe_late_peer(void)
{
	static unsigned char got[2 * LATE_CHUNK];
	struct stream tx = { .seed = 35 }, rx;
	int lfd, cli, srv, ret;
	uint64_t before;
	size_t n = 0;

	listen_lowat = 2;
	lfd = listener();
	listen_lowat = 0;
	cli = client();
	srv = accept(lfd, NULL, NULL);
	if (srv < 0)
		die("accept");
	close(lfd);
	set_int(srv, SOL_SOCKET, SO_RCVLOWAT, 1);
	send_pat(cli, &tx, LATE_CHUNK, 0);
	/* Before srv has a psock, FIONREAD is TCP's own count. */
	wait_inq(srv, LATE_CHUNK);
	add("queued=%d", inq(srv));
	ret = map_insert_peer(cli, srv);
	add("inserted=%s", ret ? ret_fmt(-1, errno) : "1");
	send_pat(cli, &tx, LATE_CHUNK, 0);
	set_rcvtimeo(srv, WAIT_MS);
	while (n < sizeof(got)) {
		ssize_t r = recv(srv, got + n, sizeof(got) - n, 0);

		if (r <= 0)
			break;
		n += r;
	}
	add("order=%s", late_order(got, n, tx.seed));
	add("bytes=%zu", n);
	wait_acked(cli);
	before = bytes_received(srv);
	rx = tx;
	send_pat(cli, &tx, LATE_CHUNK, 0);
	add("later=%zd", recv_pat(srv, &rx, LATE_CHUNK, MSG_WAITALL));
	add_data();
	probe_path = path_of(bytes_received(srv) - before, LATE_CHUNK);
	close(cli);
	close(srv);
}

const struct probe map_probes[] = {
	{ "delete_queued", probe_delete_queued, true },
	{ "late_peer", probe_late_peer, true },
	{}
};
