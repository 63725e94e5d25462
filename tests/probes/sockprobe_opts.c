// SPDX-License-Identifier: GPL-2.0
/*
 * sockprobe_opts.c - options set after the handshake, one probe per
 * option: with the bypass loaded, bpf_sockopt sees the setsockopt() and
 * the peer's later sends go by TCP, so the answers are TCP's.
 *
 * Every probe opens its pair (both ends in the sockhash, the handshake
 * redirected), sets the option on one end, and then has the other end
 * send.  -P reports the path of the bytes sent after the option: "tcp"
 * both with and without the bypass.  (rcvlowat_recv and rcvlowat_poll in
 * sockprobe_poll.c set the mark after the handshake too, with the path of
 * their handshake.)
 */
#include <time.h>
#include <linux/errqueue.h>
#include <linux/net_tstamp.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <linux/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sockprobe.h"

/*
 * SO_RCVLOWAT=10 set on the receiver after the handshake: 3 bytes are not
 * readable, neither for poll() nor for a blocking reader; 10 are, and come
 * back as one read.  on_client: the connecting end sets the mark, else the
 * accepted one.
 */
static void rcvlowat(bool on_client)
{
	struct pair p;
	struct stream tx = { .seed = 60 };
	struct reader rd = { .st = { .seed = 60 }, .len = 100 };
	int recv_fd, send_fd;
	uint64_t before;

	pair_open(&p);
	recv_fd = on_client ? p.cli : p.srv;
	send_fd = on_client ? p.srv : p.cli;
	before = bytes_received(recv_fd);
	set_int(recv_fd, SOL_SOCKET, SO_RCVLOWAT, 10);
	/*
	 * A reader asleep on an empty queue.  (One that found bytes below
	 * the mark would copy them first and then wait for 10 more unread:
	 * tcp_data_ready() compares the mark with what is unread.)
	 */
	rd.fd = recv_fd;
	reader_start(&rd);
	wait_blocked(&rd);
	send_pat(send_fd, &tx, 3, 0);
	wait_inq(recv_fd, 3);
	/* TCP does not wake the reader for 3 bytes; give it the chance. */
	wait_results(&rd, 1, 100);
	add("small=%s", events_fmt(poll_now(recv_fd) & (POLLIN | POLLRDHUP)));
	wait_blocked(&rd);
	send_pat(send_fd, &tx, 7, 0);
	wait_results(&rd, 1, WAIT_MS);
	/* 3 more, below the mark, then EOF: TCP returns them at the FIN. */
	send_pat(send_fd, &tx, 3, 0);
	shutdown(send_fd, SHUT_WR);
	reader_join(&rd, "recvs");
	if (rd.st.off != 13)
		data_bad = true;
	add_data();
	probe_path = path_of(bytes_received(recv_fd) - before, 13);
	pair_close(&p);
}

static void probe_opt_rcvlowat(void)
{
	rcvlowat(false);
}

static void probe_opt_rcvlowat_client(void)
{
	rcvlowat(true);
}

/*
 * The window: 3 bytes were redirected before the receiver set its mark.
 * They stay in its psock queue and are read first: poll() calls them
 * readable, and a read returns them alone (docs/semantics.md).  The bytes
 * sent after the mark come by TCP.
 */
static void probe_opt_rcvlowat_queued(void)
{
	struct pair p;
	struct stream tx = { .seed = 61 }, rx = { .seed = 61 };
	char buf[100];
	uint64_t before;
	ssize_t n;

	pair_open(&p);
	before = bytes_received(p.srv);
	send_pat(p.cli, &tx, 3, 0);
	wait_inq(p.srv, 3);
	set_int(p.srv, SOL_SOCKET, SO_RCVLOWAT, 10);
	add("queued=%s", events_fmt(poll_now(p.srv) & (POLLIN | POLLRDHUP)));
	send_pat(p.cli, &tx, 7, 0);
	wait_events(p.srv, POLLIN);
	n = recv(p.srv, buf, sizeof(buf), MSG_DONTWAIT);
	add("read=%s", ret_fmt(n, errno));
	if (n > 0)
		check(&rx, (unsigned char *)buf, n);
	shutdown(p.cli, SHUT_WR);
	while ((n = recv(p.srv, buf, sizeof(buf), 0)) > 0)
		check(&rx, (unsigned char *)buf, n);
	if (rx.off != 10)
		data_bad = true;
	add_data();
	probe_path = path_of(bytes_received(p.srv) - before, 10);
	pair_close(&p);
}

/*
 * Bytes intact across the switch: 16 KiB are redirected and wait unread
 * when the receiver sets SO_RCVLOWAT=2; then 4 MiB more come by TCP.  The
 * reader gets them all in order, in pieces that cross from the psock
 * queue to TCP's.
 */
static void probe_opt_switch(void)
{
	struct pair p;
	struct stream rx = { .seed = 62 };
	struct sender s = { .st = { .seed = 62 }, .len = 4 * MiB,
			    .chunk = 64 * KiB, .after = AFTER_SHUT };
	const char *last;
	uint64_t before;

	pair_open(&p);
	before = bytes_received(p.srv);
	send_pat(p.cli, &s.st, 16 * KiB, 0);
	wait_inq(p.srv, 16 * KiB);
	set_int(p.srv, SOL_SOCKET, SO_RCVLOWAT, 2);
	s.fd = p.cli;
	sender_start(&s);
	add("bytes=%llu", (unsigned long long)drain(p.srv, &rx, odd_pieces, &last));
	add("end=%s", last);
	sender_join(&s);
	add_data();
	probe_path = path_of(bytes_received(p.srv) - before, 4 * MiB + 16 * KiB);
	pair_close(&p);
}

/*
 * Options the bypass honours as TCP does, set on both ends after the
 * handshake: the connection stays on the bypass both ways.
 */
static void probe_opt_harmless(void)
{
	struct pair p;
	struct stream a = { .seed = 63 }, b = { .seed = 64 };
	struct stream ra = { .seed = 63 }, rb = { .seed = 64 };
	uint64_t before;

	pair_open(&p);
	before = bytes_received(p.srv) + bytes_received(p.cli);
	for (int i = 0; i < 2; i++) {
		int fd = i ? p.cli : p.srv;

		set_int(fd, SOL_SOCKET, SO_RCVLOWAT, 1);
		set_int(fd, SOL_SOCKET, SO_KEEPALIVE, 1);
		set_int(fd, IPPROTO_TCP, TCP_NODELAY, 1);
	}
	send_pat(p.cli, &a, 1000, 0);
	send_pat(p.srv, &b, 1000, 0);
	wait_inq(p.srv, 1000);
	wait_inq(p.cli, 1000);
	add("got=%s", R(recv_pat(p.srv, &ra, 1000, 0)));
	add("back=%s", R(recv_pat(p.cli, &rb, 1000, 0)));
	add_data();
	probe_path = path_of(bytes_received(p.srv) + bytes_received(p.cli) - before, 2000);
	pair_close(&p);
}

/*
 * SO_PEEK_OFF set on the receiver after the handshake, before the peer
 * sends: two peeks of 30 bytes give bytes 0-29, then 30-59, and a read
 * takes all 100 (TCP since 6.9, on IPv6 since 6.12; before, both paths
 * refuse the option and both peeks start at 0).
 */
static void probe_opt_peek_off(void)
{
	struct pair p;
	struct stream tx = { .seed = 65 }, rx = { .seed = 65 };
	uint64_t before;

	pair_open(&p);
	before = bytes_received(p.srv);
	add("set=%s", R(setsockopt(p.srv, SOL_SOCKET, SO_PEEK_OFF, &(int){ 0 }, sizeof(int))));
	send_pat(p.cli, &tx, 100, 0);
	wait_inq(p.srv, 100);
	add("peek1=%s", R(recv_pat(p.srv, &rx, 30, MSG_PEEK)));
	rx.off = 30;
	add("peek2=%s", R(recv_pat(p.srv, &rx, 30, MSG_PEEK)));
	rx.off = 0;
	add("read=%s", R(recv_pat(p.srv, &rx, 1000, 0)));
	add_data();
	probe_path = path_of(bytes_received(p.srv) - before, 100);
	pair_close(&p);
}

/*
 * SO_TIMESTAMPING with software receive timestamps, and SO_TIMESTAMPNS,
 * set after the handshake: recvmsg() carries SCM_TIMESTAMPING and
 * SCM_TIMESTAMPNS (probe cmsg, in sockprobe_read.c, has SO_TIMESTAMP and
 * TCP_INQ).
 */
static void probe_opt_timestamping(void)
{
	union {
		char buf[512];
		struct cmsghdr align;
	} ctl;
	unsigned char data[1000];
	struct iovec iov = { data, sizeof(data) };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1,
			     .msg_control = ctl.buf, .msg_controllen = sizeof(ctl) };
	struct stream tx = { .seed = 66 }, rx = { .seed = 66 };
	struct cmsghdr *cm;
	struct pair p;
	uint64_t before;
	ssize_t r;

	timestamps_on();
	pair_open(&p);
	before = bytes_received(p.srv);
	set_int(p.srv, SOL_SOCKET, SO_TIMESTAMPING,
		SOF_TIMESTAMPING_RX_SOFTWARE | SOF_TIMESTAMPING_SOFTWARE);
	set_int(p.srv, SOL_SOCKET, SO_TIMESTAMPNS, 1);
	send_pat(p.cli, &tx, 100, 0);
	wait_inq(p.srv, 100);
	r = recvmsg(p.srv, &mh, MSG_DONTWAIT);
	add("recvmsg=%s", ret_fmt(r, errno));
	if (r > 0)
		check(&rx, data, r);
	for (cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
		if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SO_TIMESTAMPING)
			add("timestamping=yes");
		else if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SO_TIMESTAMPNS)
			add("timestampns=yes");
		else
			add("cmsg=%d/%d", cm->cmsg_level, cm->cmsg_type);
	}
	add_data();
	probe_path = path_of(bytes_received(p.srv) - before, 100);
	pair_close(&p);
}

/*
 * SO_ZEROCOPY and a send with MSG_ZEROCOPY: TCP reports the send's
 * completion on the error queue (on loopback the receiver's copy makes it
 * SO_EE_CODE_ZEROCOPY_COPIED).  An application that waits for it must not
 * hang: the wait here is one second of poll() for POLLERR.
 */
static void probe_opt_zerocopy(void)
{
	union {
		char buf[256];
		struct cmsghdr align;
	} ctl;
	struct msghdr mh = { .msg_control = ctl.buf, .msg_controllen = sizeof(ctl) };
	struct stream tx = { .seed = 67 }, rx = { .seed = 67 };
	struct sock_extended_err *ee;
	unsigned char buf[1000];
	struct cmsghdr *cm;
	struct pair p;
	ssize_t r;

	pair_open(&p);
	add("set=%s", R(setsockopt(p.cli, SOL_SOCKET, SO_ZEROCOPY, &(int){ 1 }, sizeof(int))));
	pattern(tx.seed, tx.off, buf, sizeof(buf));
	add("send=%s", R(send(p.cli, buf, sizeof(buf), MSG_ZEROCOPY)));
	tx.off += sizeof(buf);
	add("err=%s", events_fmt(wait_events_ms(p.cli, POLLERR, 1000) & POLLERR));
	r = recvmsg(p.cli, &mh, MSG_ERRQUEUE | MSG_DONTWAIT);
	add("errqueue=%s", ret_fmt(r, errno));
	for (cm = r < 0 ? NULL : CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
		ee = (struct sock_extended_err *)CMSG_DATA(cm);
		if (ee->ee_origin == SO_EE_ORIGIN_ZEROCOPY)
			add("done=%u-%u%s", ee->ee_info, ee->ee_data,
			    ee->ee_code & SO_EE_CODE_ZEROCOPY_COPIED ? ",copied" : "");
	}
	add("read=%s", R(recv_pat(p.srv, &rx, sizeof(buf), MSG_WAITALL)));
	add_data();
	pair_close(&p);
}

/*
 * getsockopt(TCP_ZEROCOPY_RECEIVE) on a mapping of the socket, with 100
 * bytes queued: too few to map a page, so TCP maps none and says, in
 * recv_skip_hint, how many to read with recv() instead; inq counts them.
 * It reads sk_receive_queue only (tcp_zerocopy_receive()).
 */
static void probe_opt_zerocopy_receive(void)
{
	struct stream tx = { .seed = 68 }, rx = { .seed = 68 };
	struct tcp_zerocopy_receive zc = {};
	socklen_t len = sizeof(zc);
	size_t map_len = 64 * KiB;
	struct pair p;
	void *map;

	pair_open(&p);
	send_pat(p.cli, &tx, 100, 0);
	wait_inq(p.srv, 100);
	map = mmap(NULL, map_len, PROT_READ, MAP_SHARED, p.srv, 0);
	add("mmap=%s", map == MAP_FAILED ? ret_fmt(-1, errno) : "ok");
	zc.address = (uintptr_t)map;
	zc.length = map_len;
	add("zc=%s", R(getsockopt(p.srv, IPPROTO_TCP, TCP_ZEROCOPY_RECEIVE, &zc, &len)));
	add("mapped=%u skip=%u inq=%u", zc.length, zc.recv_skip_hint, zc.inq);
	add("read=%s", R(recv_pat(p.srv, &rx, 1000, 0)));
	if (map != MAP_FAILED)
		munmap(map, map_len);
	add_data();
	pair_close(&p);
}

/*
 * Receive 100 bytes with recvmsg() and add the control messages that came
 * with them.
 */
static void recv_cmsgs(int fd, struct stream *rx)
{
	union {
		char buf[512];
		struct cmsghdr align;
	} ctl;
	unsigned char data[1000];
	struct iovec iov = { data, sizeof(data) };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1,
			     .msg_control = ctl.buf, .msg_controllen = sizeof(ctl) };
	struct cmsghdr *cm;
	ssize_t r;

	wait_inq(fd, 100);
	r = recvmsg(fd, &mh, MSG_DONTWAIT);
	add("recvmsg=%s", ret_fmt(r, errno));
	if (r > 0)
		check(rx, data, r);
	for (cm = r > 0 ? CMSG_FIRSTHDR(&mh) : NULL; cm; cm = CMSG_NXTHDR(&mh, cm)) {
		if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SO_TIMESTAMP)
			add("timestamp=yes");
		else if (cm->cmsg_level == IPPROTO_TCP && cm->cmsg_type == TCP_CM_INQ)
			add("inq=%d", *(int *)CMSG_DATA(cm));
		else
			add("cmsg=%d/%d", cm->cmsg_level, cm->cmsg_type);
	}
}

static void timestamp_inq(int fd)
{
	set_int(fd, SOL_SOCKET, SO_TIMESTAMP, 1);
	set_int(fd, IPPROTO_TCP, TCP_INQ, 1);
}

/*
 * SO_TIMESTAMP and TCP_INQ set on the listener: the accepted socket
 * inherits them, before bpf_sockops sees it established, so it is left on
 * TCP and its reads carry both control messages.
 */
static void probe_opt_listener(void)
{
	struct stream tx = { .seed = 69 }, rx = { .seed = 69 };
	struct pair p;

	timestamps_on();
	listen_setup = timestamp_inq;
	pair_open(&p);
	listen_setup = NULL;
	send_pat(p.cli, &tx, 100, 0);
	recv_cmsgs(p.srv, &rx);
	add_data();
	pair_close(&p);
}

/* The same, set on the client before connect(). */
static void probe_opt_preconnect(void)
{
	struct stream tx = { .seed = 70 }, rx = { .seed = 70 };
	struct pair p;

	timestamps_on();
	client_setup = timestamp_inq;
	pair_open(&p);
	client_setup = NULL;
	send_pat(p.srv, &tx, 100, 0);
	recv_cmsgs(p.cli, &rx);
	add_data();
	pair_close(&p);
}

/*
 * SO_RCVBUF of 64 KiB set on a receiver after the handshake, which then
 * does not read: a non-blocking sender writes 64 KiB at a time until
 * EAGAIN.  TCP holds the receiver to its buffer (the kernel doubles what
 * was asked); the bypass caps its queue bound at that buffer, then the
 * connection goes by TCP (bpf_redir.c, rcvbuf_btf()), whose window does the
 * rest.  held= says whether what the receiver holds unread (SO_MEMINFO's
 * sk_rmem_alloc, both queues) is within twice its buffer; without the cap
 * it held the bypass's bound, 4 MiB.  Then every byte is read back.
 */
static void probe_opt_rcvbuf(void)
{
	static unsigned char buf[64 * KiB];
	uint32_t mem[SK_MEMINFO_VARS] = { 0 };
	socklen_t len = sizeof(mem);
	struct pair p;
	struct stream tx = { .seed = 66 }, rx = { .seed = 66 };
	const char *last;
	uint64_t before, n;
	ssize_t r = 0;

	pair_open(&p);
	before = bytes_received(p.srv);
	set_int(p.srv, SOL_SOCKET, SO_RCVBUF, 64 * KiB);
	while (tx.off < 256 * MiB) {
		pattern(tx.seed, tx.off, buf, sizeof(buf));
		r = send(p.cli, buf, sizeof(buf), MSG_DONTWAIT | MSG_NOSIGNAL);
		if (r <= 0)
			break;
		tx.off += r;
	}
	add("eagain=%s", r < 0 && errno == EAGAIN ? "yes" : "no");
	if (getsockopt(p.srv, SOL_SOCKET, SO_MEMINFO, mem, &len))
		die("%s: SO_MEMINFO", probe_name);
	add("rcvbuf=%u", mem[SK_MEMINFO_RCVBUF]);
	add("held=%s", mem[SK_MEMINFO_RMEM_ALLOC] <= 2 * mem[SK_MEMINFO_RCVBUF] ?
	    "rcvbuf" : "more");
	close(p.cli);
	p.cli = -1;
	n = drain(p.srv, &rx, NULL, &last);
	add("all=%s", n == tx.off ? "yes" : "no");
	add_data();
	add("end=%s", last);
	probe_path = path_of(bytes_received(p.srv) - before, tx.off);
	pair_close(&p);
}

/*
 * For options.bats: a pair whose server set SO_RCVLOWAT, held open until
 * stdin closes, so that status.sh can be read meanwhile.  "ready" on
 * stderr says the mark is set.  Not in "all".
 */
static void probe_opt_hold(void)
{
	struct pair p;
	char c;

	pair_open(&p);
	set_int(p.srv, SOL_SOCKET, SO_RCVLOWAT, 10);
	fprintf(stderr, "ready\n");
	alarm(0);
	while (read(STDIN_FILENO, &c, 1) > 0)
		;
	add("held=1");
	pair_close(&p);
}

const struct probe opts_probes[] = {
	PROBE(opt_rcvlowat),
	PROBE(opt_rcvlowat_client),
	PROBE(opt_rcvlowat_queued),
	PROBE(opt_switch),
	PROBE(opt_harmless),
	PROBE(opt_peek_off),
	PROBE(opt_timestamping),
	PROBE(opt_zerocopy),
	PROBE(opt_zerocopy_receive),
	PROBE(opt_rcvbuf),
	PROBE(opt_listener),
	PROBE(opt_preconnect),
	{ "opt_hold", probe_opt_hold, true },
	{}
};
