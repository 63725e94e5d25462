// SPDX-License-Identifier: GPL-2.0
/*
 * sockprobe_read.c - reading: recv() flags (MSG_PEEK, MSG_DONTWAIT, MSG_TRUNC,
 * MSG_WAITALL), O_NONBLOCK, SO_RCVTIMEO, SO_PEEK_OFF, the FIONREAD and
 * SIOCOUTQ ioctls, and the control messages of SO_TIMESTAMP and TCP_INQ.
 */
#include <fcntl.h>
#include <linux/sockios.h>
#include <linux/tcp.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sockprobe.h"

/* MSG_PEEK over three sends, then the same bytes by a plain read. */
static void probe_peek(void)
{
	struct pair p;
	struct stream tx = { .seed = 8 }, rx = { .seed = 8 };

	pair_open(&p);
	send_pat(p.cli, &tx, 50, 0);
	send_pat(p.cli, &tx, 30, 0);
	send_pat(p.cli, &tx, 20, 0);
	wait_inq(p.srv, 100);
	add("peek40=%s", R(recv_pat(p.srv, &rx, 40, MSG_PEEK)));
	add("peek200=%s", R(recv_pat(p.srv, &rx, 200, MSG_PEEK)));
	add("read60=%s", R(recv_pat(p.srv, &rx, 60, 0)));
	add("peek200=%s", R(recv_pat(p.srv, &rx, 200, MSG_PEEK)));
	add("read200=%s", R(recv_pat(p.srv, &rx, 200, 0)));
	add("peek_empty=%s", R(recv_pat(p.srv, &rx, 200, MSG_PEEK | MSG_DONTWAIT)));
	add_data();
	pair_close(&p);
}

/* MSG_DONTWAIT and O_NONBLOCK on an empty socket, with data, after EOF. */
static void probe_dontwait(void)
{
	struct pair p;
	struct stream tx = { .seed = 9 }, rx = { .seed = 9 };

	pair_open(&p);
	add("empty=%s", R(recv_pat(p.srv, &rx, 100, MSG_DONTWAIT)));
	fcntl(p.srv, F_SETFL, fcntl(p.srv, F_GETFL) | O_NONBLOCK);
	add("nonblock=%s", R(recv_pat(p.srv, &rx, 100, 0)));
	send_pat(p.cli, &tx, 10, 0);
	wait_inq(p.srv, 10);
	add("with_data=%s", R(recv_pat(p.srv, &rx, 100, 0)));
	add("drained=%s", R(recv_pat(p.srv, &rx, 100, 0)));
	shutdown(p.cli, SHUT_WR);
	wait_events(p.srv, POLLRDHUP);
	add("eof=%s", R(recv_pat(p.srv, &rx, 100, MSG_DONTWAIT)));
	add_data();
	pair_close(&p);
}

/* FIONREAD (SIOCINQ) as data comes and goes; SIOCOUTQ once all is read. */
static void probe_fionread(void)
{
	struct pair p;
	struct stream tx = { .seed = 10 }, rx = { .seed = 10 };
	int outq = -1;

	pair_open(&p);
	add("empty=%d", inq(p.srv));
	send_pat(p.cli, &tx, 100, 0);
	send_pat(p.cli, &tx, 200, 0);
	send_pat(p.cli, &tx, 300, 0);
	wait_inq(p.srv, 600);
	add("sent600=%d", inq(p.srv));
	recv_pat(p.srv, &rx, 150, 0);
	add("read150=%d", inq(p.srv));
	recv_pat(p.srv, &rx, 1000, 0);
	add("read_all=%d", inq(p.srv));
	/* The sender's queue empties when TCP's ACK comes; wait for that. */
	for (int i = 0; i < WAIT_MS && outq; i++) {
		if (ioctl(p.cli, SIOCOUTQ, &outq))
			die("SIOCOUTQ");
		if (outq)
			usleep(1000);
	}
	add("outq=%d", outq);
	shutdown(p.cli, SHUT_WR);
	wait_events(p.srv, POLLRDHUP);
	add("eof=%d", inq(p.srv));
	add_data();
	pair_close(&p);
}

/* SO_PEEK_OFF: each MSG_PEEK continues where the last one stopped. */
static void probe_peek_off(void)
{
	struct pair p;
	struct stream tx = { .seed = 32 }, rx = { .seed = 32 };

	pair_open(&p);
	send_pat(p.cli, &tx, 100, 0);
	wait_inq(p.srv, 100);
	add("set=%s", R(setsockopt(p.srv, SOL_SOCKET, SO_PEEK_OFF, &(int){ 0 }, sizeof(int))));
	add("peek1=%s", R(recv_pat(p.srv, &rx, 30, MSG_PEEK)));
	rx.off = 30;
	add("peek2=%s", R(recv_pat(p.srv, &rx, 30, MSG_PEEK)));
	rx.off = 0;
	add("read=%s", R(recv_pat(p.srv, &rx, 1000, 0)));
	add_data();
	pair_close(&p);
}

/* Control messages TCP attaches to recvmsg(): SO_TIMESTAMP, TCP_INQ. */
static void probe_cmsg(void)
{
	union {
		char buf[256];
		struct cmsghdr align;
	} ctl;
	unsigned char data[1000];
	struct iovec iov = { data, sizeof(data) };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1,
			     .msg_control = ctl.buf, .msg_controllen = sizeof(ctl) };
	struct stream tx = { .seed = 33 }, rx = { .seed = 33 };
	struct cmsghdr *cm;
	struct pair p;
	ssize_t r;

	timestamps_on();
	pair_open(&p);
	set_int(p.srv, SOL_SOCKET, SO_TIMESTAMP, 1);
	set_int(p.srv, IPPROTO_TCP, TCP_INQ, 1);
	send_pat(p.cli, &tx, 100, 0);
	wait_inq(p.srv, 100);
	r = recvmsg(p.srv, &mh, MSG_DONTWAIT);
	add("recvmsg=%s", ret_fmt(r, errno));
	if (r > 0)
		check(&rx, data, r);
	for (cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
		if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SO_TIMESTAMP)
			add("timestamp=yes");
		else if (cm->cmsg_level == IPPROTO_TCP && cm->cmsg_type == TCP_CM_INQ)
			add("inq=%d", *(int *)CMSG_DATA(cm));
		else
			add("cmsg=%d/%d", cm->cmsg_level, cm->cmsg_type);
	}
	add_data();
	pair_close(&p);
}

/* recv(MSG_TRUNC) on TCP discards bytes without copying them. */
static void probe_trunc(void)
{
	struct pair p;
	struct stream tx = { .seed = 11 }, rx = { .seed = 11 };

	pair_open(&p);
	send_pat(p.cli, &tx, 100, 0);
	wait_inq(p.srv, 100);
	add("trunc40=%s", R(recv(p.srv, NULL, 40, MSG_TRUNC)));
	rx.off = 40;
	add("rest=%s", R(recv_pat(p.srv, &rx, 1000, MSG_DONTWAIT)));
	add_data();
	pair_close(&p);
}

/* SO_RCVTIMEO: an empty socket times out with EAGAIN; data still comes. */
static void probe_rcvtimeo(void)
{
	struct pair p;
	struct stream tx = { .seed = 12 }, rx = { .seed = 12 };

	pair_open(&p);
	set_rcvtimeo(p.srv, 100);
	add("empty=%s", R(recv_pat(p.srv, &rx, 100, 0)));
	send_pat(p.cli, &tx, 10, 0);
	add("with_data=%s", R(recv_pat(p.srv, &rx, 100, 0)));
	add("again=%s", R(recv_pat(p.srv, &rx, 100, 0)));
	add_data();
	pair_close(&p);
}

/*
 * MSG_WAITALL: recv() returns only when the whole buffer is filled, here by
 * four sends of 16 KiB, each made while the reader sleeps.
 */
static void probe_waitall(void)
{
	struct pair p;
	struct stream tx = { .seed = 13 };
	struct reader rd = { .st = { .seed = 13 }, .len = 64 * KiB,
			     .flags = MSG_WAITALL };

	pair_open(&p);
	rd.fd = p.srv;
	reader_start(&rd);
	for (int i = 1; i <= 4; i++) {
		wait_blocked(&rd);
		send_pat(p.cli, &tx, 16 * KiB, 0);
		/* TCP keeps sleeping until 64 KiB are in; give it the chance. */
		wait_results(&rd, i, 50);
	}
	close(p.cli);
	p.cli = -1;
	reader_join(&rd, "recvs");
	add_data();
	pair_close(&p);
}

const struct probe read_probes[] = {
	PROBE(peek),
	PROBE(dontwait),
	PROBE(fionread),
	PROBE(peek_off),
	PROBE(cmsg),
	PROBE(trunc),
	PROBE(rcvtimeo),
	PROBE(waitall),
	{}
};
