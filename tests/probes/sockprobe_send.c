// SPDX-License-Identifier: GPL-2.0
/*
 * sockprobe_send.c - the send paths: sendmsg() and writev() with many
 * iovecs, bulk writes, sendfile() and splice() into the socket, splice() out
 * of it, TCP_CORK, MSG_MORE and TCP_NODELAY, MSG_OOB, and a receiver that
 * stops reading.
 */
#include <fcntl.h>
#include <linux/tcp.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "sockprobe.h"

/* sendmsg() and writev() with several iovecs, read by recvmsg() into several. */
static void probe_iovec(void)
{
	static const size_t sizes[] = { 1, 10, 100, 1000, 10000, 3, 4096 };
	static unsigned char bufs[7][10000];
	struct iovec iov[7];
	struct msghdr mh = { .msg_iov = iov, .msg_iovlen = 7 };
	struct stream tx = { .seed = 17 }, rx = { .seed = 17 };
	size_t total = 0;
	struct pair p;
	ssize_t r;

	pair_open(&p);
	for (int i = 0; i < 7; i++) {
		pattern(tx.seed, tx.off + total, bufs[i], sizes[i]);
		iov[i] = (struct iovec){ bufs[i], sizes[i] };
		total += sizes[i];
	}
	add("sendmsg=%s", R(sendmsg(p.cli, &mh, 0)));
	tx.off += total;
	for (int i = 0; i < 3; i++) {
		pattern(tx.seed, tx.off, bufs[i], sizes[6 - i]);
		iov[i] = (struct iovec){ bufs[i], sizes[6 - i] };
		tx.off += sizes[6 - i];
	}
	add("writev=%s", R(writev(p.cli, iov, 3)));
	shutdown(p.cli, SHUT_WR);
	wait_events(p.srv, POLLRDHUP);
	/* Scatter the read over iovecs of other sizes. */
	for (int i = 0; i < 7; i++)
		iov[i] = (struct iovec){ bufs[i], sizes[(i + 3) % 7] };
	r = recvmsg(p.srv, &mh, 0);
	add("recvmsg=%s", ret_fmt(r, errno));
	for (int i = 0; r > 0 && i < 7; i++) {
		size_t n = (size_t)r < iov[i].iov_len ? (size_t)r : iov[i].iov_len;

		check(&rx, bufs[i], n);
		r -= n;
	}
	add("rest=%llu", (unsigned long long)drain(p.srv, &rx, NULL, &(const char *){ NULL }));
	add("total=%llu", (unsigned long long)rx.off);
	add_data();
	pair_close(&p);
}

/*
 * LEN bytes from a sender thread of the given kind, CHUNK bytes a call
 * (0: its default), read in odd small pieces.
 */
static void sender_probe(enum sender_kind kind, uint32_t seed, size_t len,
			 size_t chunk)
{
	struct pair p;
	struct sender s = { .st = { .seed = seed }, .len = len, .chunk = chunk,
			    .kind = kind, .after = AFTER_CLOSE };
	struct stream rx = { .seed = seed };
	const char *last;
	uint64_t n;

	pair_open(&p);
	s.fd = p.cli;
	sender_start(&s);
	n = drain(p.srv, &rx, odd_pieces, &last);
	sender_join(&s);
	p.cli = -1;
	add("bytes=%llu", (unsigned long long)n);
	add_data();
	add("end=%s", last);
	pair_close(&p);
}

/* 4 MiB written at once, read in odd small pieces. */
static void probe_bulk(void)
{
	sender_probe(SEND_PLAIN, 16, 4 * MiB, 4 * MiB);
}

static void probe_sendfile(void)
{
	sender_probe(SEND_SENDFILE, 18, 1 * MiB, 0);
}

static void probe_splice_send(void)
{
	sender_probe(SEND_SPLICE, 19, 1 * MiB, 0);
}

/* splice() from the socket into a pipe, as proxies do. */
static void probe_splice_recv(void)
{
	static unsigned char buf[4096];
	struct pair p;
	struct stream tx = { .seed = 20 }, rx = { .seed = 20 };
	int pfd[2];
	ssize_t r;

	pair_open(&p);
	if (pipe(pfd))
		die("pipe");
	send_pat(p.cli, &tx, 1000, 0);
	wait_inq(p.srv, 1000);
	/* tcp_splice_read() blocks unless the socket itself is non-blocking. */
	fcntl(p.srv, F_SETFL, fcntl(p.srv, F_GETFL) | O_NONBLOCK);
	r = splice(p.srv, NULL, pfd[1], NULL, sizeof(buf), SPLICE_F_NONBLOCK);
	add("splice=%s", ret_fmt(r, errno));
	if (r > 0) {
		if (read(pfd[0], buf, r) != r)
			die("read pipe");
		check(&rx, buf, r);
	}
	add("recv_after=%s", R(recv_pat(p.srv, &rx, 4096, MSG_DONTWAIT)));
	add_data();
	close(pfd[0]);
	close(pfd[1]);
	pair_close(&p);
}

/* TCP_CORK, MSG_MORE and TCP_NODELAY: small writes all arrive, in order. */
static void probe_cork(void)
{
	struct pair p;
	struct stream tx = { .seed = 21 }, rx = { .seed = 21 };

	pair_open(&p);
	set_int(p.cli, IPPROTO_TCP, TCP_CORK, 1);
	send_pat(p.cli, &tx, 10, 0);
	send_pat(p.cli, &tx, 20, 0);
	send_pat(p.cli, &tx, 30, 0);
	set_int(p.cli, IPPROTO_TCP, TCP_CORK, 0);
	wait_inq(p.srv, 60);
	add("cork=%s", R(recv_pat(p.srv, &rx, 1000, 0)));
	send_pat(p.cli, &tx, 10, MSG_MORE);
	send_pat(p.cli, &tx, 20, MSG_MORE);
	send_pat(p.cli, &tx, 30, 0);
	wait_inq(p.srv, 60);
	add("more=%s", R(recv_pat(p.srv, &rx, 1000, 0)));
	set_int(p.cli, IPPROTO_TCP, TCP_NODELAY, 1);
	for (int i = 0; i < 5; i++)
		send_pat(p.cli, &tx, 10, 0);
	wait_inq(p.srv, 50);
	add("nodelay=%s", R(recv_pat(p.srv, &rx, 1000, 0)));
	add_data();
	pair_close(&p);
}

/* MSG_OOB: TCP takes the urgent byte out of the stream. */
static void probe_oob(void)
{
	struct pair p;
	char buf[16] = "";
	int mark = -1;

	pair_open(&p);
	if (send(p.cli, "abc", 3, 0) != 3 || send(p.cli, "X", 1, MSG_OOB) != 1)
		die("send");
	wait_inq(p.srv, 3);
	/* TCP flags the urgent byte with POLLPRI; give it a moment. */
	wait_events_ms(p.srv, POLLPRI, 200);
	add("inline=%s", R(recv(p.srv, buf, sizeof(buf), MSG_DONTWAIT)));
	add("got=%.4s", buf);
	ioctl(p.srv, SIOCATMARK, &mark);
	add("atmark=%d", mark);
	buf[0] = 0;
	add("oob=%s", R(recv(p.srv, buf, 1, MSG_OOB | MSG_DONTWAIT)));
	add("got=%.1s", buf);
	pair_close(&p);
}

/*
 * A receiver that does not read: TCP's window and the sender's buffer fill,
 * and a non-blocking sender gets EAGAIN.  With the bypass, the connection
 * goes to TCP once the receiver holds --max-queue (128 MiB at most by
 * default), and then the same happens.  Stops at 256 MiB either way.
 */
static void probe_backpressure(void)
{
	static unsigned char buf[64 * KiB];
	struct pair p;
	struct stream tx = { .seed = 22 }, rx = { .seed = 22 };
	const char *last;
	ssize_t r = 0;
	uint64_t n;

	pair_open(&p);
	while (tx.off < 256 * MiB) {
		pattern(tx.seed, tx.off, buf, sizeof(buf));
		r = send(p.cli, buf, sizeof(buf), MSG_DONTWAIT | MSG_NOSIGNAL);
		if (r <= 0)
			break;
		tx.off += r;
	}
	add("eagain=%s", r < 0 && errno == EAGAIN ? "yes" : "no");
	close(p.cli);
	p.cli = -1;
	n = drain(p.srv, &rx, NULL, &last);
	add("all=%s", n == tx.off ? "yes" : "no");
	add_data();
	add("end=%s", last);
	pair_close(&p);
}

const struct probe send_probes[] = {
	PROBE(bulk),
	PROBE(iovec),
	PROBE(sendfile),
	PROBE(splice_send),
	PROBE(splice_recv),
	PROBE(cork),
	PROBE(oob),
	PROBE(backpressure),
	{}
};
