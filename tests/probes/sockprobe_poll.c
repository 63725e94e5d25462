// SPDX-License-Identifier: GPL-2.0
/*
 * sockprobe_poll.c - readiness and low-water marks: poll(), select(), epoll
 * level- and edge-triggered at each stage of a connection, and SO_RCVLOWAT
 * on a blocking reader, on poll and epoll, and inherited from the listener.
 */
#include <poll.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sockprobe.h"

/*
 * SO_RCVLOWAT on a blocking reader: TCP wakes it only once that many bytes
 * are queued, so 10 bytes, then 100 bytes, come back as one read of 110.
 */
static void lowat_reader(void)
{
	struct pair p;
	struct stream tx = { .seed = 14 };
	struct reader rd = { .st = { .seed = 14 }, .len = 1000 };

	pair_open(&p);
	set_int(p.srv, SOL_SOCKET, SO_RCVLOWAT, 100);
	rd.fd = p.srv;
	reader_start(&rd);
	wait_blocked(&rd);
	send_pat(p.cli, &tx, 10, 0);
	/* TCP does not wake the reader for 10 bytes; give it the chance. */
	wait_results(&rd, 1, 100);
	wait_blocked(&rd);
	send_pat(p.cli, &tx, 100, 0);
	shutdown(p.cli, SHUT_WR);
	reader_join(&rd, "recvs");
	if (rd.st.off != 110)
		data_bad = true;
	pair_close(&p);
}

static void probe_rcvlowat_recv(void)
{
	lowat_reader();
	add_data();
}

/*
 * The stages every readiness probe goes through, on the server socket:
 * empty, 100 bytes queued, read, 10 more bytes, peer half-closed (data read),
 * both half-closed.  report() is called at each stage.
 */
static void stages(void (*report)(struct pair *p, const char *stage),
		   void (*setup)(int fd))
{
	struct pair p;
	struct stream tx = { .seed = 15 }, rx = { .seed = 15 };

	pair_open(&p);
	if (setup)
		setup(p.srv);
	report(&p, "empty");
	send_pat(p.cli, &tx, 100, 0);
	wait_inq(p.srv, 100);
	report(&p, "data");
	/* MSG_DONTWAIT: with SO_RCVLOWAT a blocking recv() would wait. */
	recv_pat(p.srv, &rx, 60, MSG_DONTWAIT);
	report(&p, "partial");
	recv_pat(p.srv, &rx, 60, MSG_DONTWAIT);
	report(&p, "read");
	send_pat(p.cli, &tx, 10, 0);
	wait_inq(p.srv, 10);
	report(&p, "more");
	recv_pat(p.srv, &rx, 100, MSG_DONTWAIT);
	shutdown(p.cli, SHUT_WR);
	wait_events(p.srv, POLLRDHUP);
	report(&p, "fin");
	shutdown(p.srv, SHUT_WR);
	wait_events(p.srv, POLLHUP);
	report(&p, "both");
	add_data();
	pair_close(&p);
}

static void report_poll(struct pair *p, const char *stage)
{
	add("%s=%s", stage, events_fmt(poll_now(p->srv)));
}

static void probe_poll(void)
{
	stages(report_poll, NULL);
}

static void report_select(struct pair *p, const char *stage)
{
	struct timeval tv = {};
	fd_set r, w, x;

	FD_ZERO(&r);
	FD_ZERO(&w);
	FD_ZERO(&x);
	FD_SET(p->srv, &r);
	FD_SET(p->srv, &w);
	FD_SET(p->srv, &x);
	if (select(p->srv + 1, &r, &w, &x, &tv) < 0)
		die("select");
	add("%s=%s%s%s", stage, FD_ISSET(p->srv, &r) ? "r" : "-",
	    FD_ISSET(p->srv, &w) ? "w" : "-", FD_ISSET(p->srv, &x) ? "x" : "-");
}

static void probe_select(void)
{
	stages(report_select, NULL);
}

static int epfd = -1;

static void epoll_setup(int fd, unsigned int flags)
{
	struct epoll_event ev = {
		.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLPRI | flags,
		.data.fd = fd,
	};

	epfd = epoll_create1(0);
	if (epfd < 0 || epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev))
		die("epoll");
}

static void report_epoll(struct pair *p, const char *stage)
{
	struct epoll_event ev = {};
	int n = epoll_wait(epfd, &ev, 1, 0);

	(void)p;
	add("%s=%s", stage, n > 0 ? events_fmt(ev.events) : n ? "-1" : "none");
}

static void setup_lt(int fd)
{
	epoll_setup(fd, 0);
}

/* Edge-triggered: each stage is reported twice; the second must be "none". */
static void report_epoll_twice(struct pair *p, const char *stage)
{
	report_epoll(p, stage);
	report_epoll(p, "+again");
}

static void setup_et(int fd)
{
	epoll_setup(fd, EPOLLET);
}

static void probe_epoll_lt(void)
{
	stages(report_epoll, setup_lt);
	close(epfd);
}

static void probe_epoll_et(void)
{
	stages(report_epoll_twice, setup_et);
	close(epfd);
}

/* SO_RCVLOWAT=100: poll, select and epoll see 10 bytes as not readable. */
static void setup_lowat(int fd)
{
	set_int(fd, SOL_SOCKET, SO_RCVLOWAT, 100);
	epoll_setup(fd, 0);
}

static void report_lowat(struct pair *p, const char *stage)
{
	char tag[32];

	add("%s=%s", stage, events_fmt(poll_now(p->srv) & (POLLIN | POLLRDHUP)));
	snprintf(tag, sizeof(tag), "%s_ep", stage);
	report_epoll(p, tag);
}

static void probe_rcvlowat_poll(void)
{
	stages(report_lowat, setup_lowat);
	close(epfd);
}

/*
 * The same, with SO_RCVLOWAT set on the listener: accepted sockets inherit
 * it, so the server's socket has it from the start (bpf_sockops sees it and
 * leaves the connection on TCP).  Then a blocking reader, as rcvlowat_recv.
 */
static void setup_ep(int fd)
{
	epoll_setup(fd, 0);
}

static void probe_rcvlowat_listener(void)
{
	listen_lowat = 100;
	lowat_reader();
	stages(report_lowat, setup_ep);
	close(epfd);
	listen_lowat = 0;
}

const struct probe poll_probes[] = {
	PROBE(rcvlowat_recv),
	PROBE(poll),
	PROBE(select),
	PROBE(epoll_lt),
	PROBE(epoll_et),
	PROBE(rcvlowat_poll),
	PROBE(rcvlowat_listener),
	{}
};
