// SPDX-License-Identifier: GPL-2.0
/*
 * sockprobe - what a TCP application can see of its sockets, printed so that
 * a run with the bypass and a run without it can be compared byte for byte.
 *
 *   sockprobe [-4|-6|-m] [-p PORT] [-P] PROBE... | all
 *   sockprobe -M PINNED_SOCKHASH [-4|-6|-m] [-p PORT] [-P] delete_queued|late_peer
 *   sockprobe -l
 *
 * Each probe opens its own connection on the loopback, on a listener at PORT:
 * -4 127.0.0.1 to 127.0.0.1, -6 ::1 to ::1, -m an AF_INET client to a
 * dual-stack listener on [::] (the accepted socket is AF_INET6, v4-mapped).
 * It runs one scenario and prints one line, e.g.
 *
 *   eof_close: bytes=65536 data=ok end=0 again=0
 *
 * with return values (or -1(ERRNO)) and event masks only: no ports, no
 * timings, no byte counts that depend on buffer sizes.  Every payload is a
 * pseudo-random pattern checked at its offset, so "data=ok" means no byte was
 * lost, duplicated or reordered.  Waits only arrange a scenario: a reader is
 * proven asleep in recv() (/proc/self/task/TID/stat) before the event it
 * waits for; a wait never decides the output.
 *
 * Before a probe's data flows, both ends exchange one byte each way: the
 * server's send cannot run before its socket became established (and so was
 * put in the sockhash), and the client's connect() returned after its own.
 * From then on every send is redirected when the bypass is loaded.  -P adds
 * "path=bypass" or "path=tcp" to each line: TCP_INFO's tcpi_bytes_received
 * counts only bytes that came through TCP, so it is 0 after the handshake
 * exactly when both handshake bytes were redirected.
 *
 * Two probes need the bypass loaded and its sockhash pinned (-M), so "all"
 * does not run them: delete_queued deletes a socket's entry while bytes
 * wait on it, to show what that does to them; late_peer inserts a server
 * socket after its client's first bytes went by TCP, to show they stay in
 * order.
 *
 * This file is the framework (sockprobe.h says what it offers) and main();
 * the probes live in one file per family, each with its table:
 *
 *   sockprobe_eof.c    end of stream: close, half-close, blocked readers
 *                      woken by FIN, shutdown() or a signal
 *   sockprobe_read.c   reading flags and ioctls: MSG_PEEK, MSG_DONTWAIT,
 *                      FIONREAD, SO_PEEK_OFF, control messages, MSG_TRUNC,
 *                      SO_RCVTIMEO, MSG_WAITALL
 *   sockprobe_poll.c   poll, select, epoll, and SO_RCVLOWAT
 *   sockprobe_send.c   the send paths: writev, sendmsg, sendfile, splice
 *                      (both ways), TCP_CORK, MSG_OOB, a reader that stops
 *   sockprobe_close.c  closing: resets, SO_LINGER, EPIPE, SHUT_RD, a peer
 *                      process that exits, sends right after connect()
 *   sockprobe_map.c    the sockhash itself (-M): delete_queued, late_peer
 *   sockprobe_flow.c   a reader that falls behind: fallback to TCP, the way
 *                      back, and what TCP answers meanwhile
 *   sockprobe_opts.c   options set after the handshake: the peer's sends go
 *                      by TCP from then on
 */
#include <fcntl.h>
#include <linux/sockios.h>
#include <linux/tcp.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sockprobe.h"

static char mode = '4';
static int port = 30000;
static bool show_path;
int listen_lowat;
void (*listen_setup)(int fd);
void (*client_setup)(int fd);
const char *map_pin;

/* The line being built, the probe's name and whether its data was intact. */
static char line[2048];
static size_t line_len;
const char *probe_name;
bool data_bad;
const char *probe_path;

/* --- output ------------------------------------------------------------ */

void add(const char *fmt, ...)
{
	va_list ap;

	if (line_len < sizeof(line) - 1)
		line[line_len++] = ' ';
	va_start(ap, fmt);
	line_len += vsnprintf(line + line_len, sizeof(line) - line_len, fmt, ap);
	va_end(ap);
	if (line_len >= sizeof(line))
		line_len = sizeof(line) - 1;
}

/* A return value as the application sees it: "42" or "-1(EAGAIN)". */
const char *ret_fmt(ssize_t r, int err)
{
	static __thread char ring[16][32];
	static __thread int next;
	char *s = ring[next++ % 16];

	if (r >= 0)
		snprintf(s, sizeof(ring[0]), "%zd", r);
	else
		snprintf(s, sizeof(ring[0]), "-1(%s)", strerrorname_np(err));
	return s;
}

const char *events_fmt(unsigned int ev)
{
	static const struct { unsigned int bit; const char *name; } names[] = {
		{ POLLIN, "IN" }, { POLLPRI, "PRI" }, { POLLOUT, "OUT" },
		{ POLLRDHUP, "RDHUP" }, { POLLERR, "ERR" }, { POLLHUP, "HUP" },
	};
	static __thread char ring[8][64];
	static __thread int next;
	char *s = ring[next++ % 8];
	size_t len = 0;

	s[0] = '\0';
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (ev & names[i].bit)
			len += snprintf(s + len, sizeof(ring[0]) - len, "%s%s",
					len ? "|" : "", names[i].name);
	return len ? s : "0";
}

static void on_alarm(int sig)
{
	static const char msg[] = ": hung (no result within the probe timeout)\n";

	(void)sig;
	if (write(STDOUT_FILENO, probe_name, strlen(probe_name)) < 0 ||
	    write(STDOUT_FILENO, msg, sizeof(msg) - 1) < 0)
		_exit(2);
	_exit(1);
}

static void begin(const char *name)
{
	probe_name = name;
	line_len = 0;
	line[0] = '\0';
	data_bad = false;
	probe_path = NULL;
	alarm(PROBE_TIMEOUT);
}

void add_data(void)
{
	add("data=%s", data_bad ? "BAD" : "ok");
}

static void end(void)
{
	alarm(0);
	printf("%s:%s", probe_name, line);
	if (show_path)
		printf(" path=%s", probe_path ? probe_path : "none");
	printf("\n");
	fflush(stdout);
}

/* --- the payload ---------------------------------------------------------- */

/* Check len received bytes against the stream at its offset. */
void check(struct stream *st, const unsigned char *buf, size_t len)
{
	unsigned char exp[4096];

	for (size_t done = 0; done < len; ) {
		size_t n = len - done < sizeof(exp) ? len - done : sizeof(exp);

		pattern(st->seed, st->off + done, exp, n);
		if (memcmp(buf + done, exp, n))
			data_bad = true;
		done += n;
	}
	st->off += len;
}

/* Send len bytes of the stream, blocking until all are taken. */
void send_pat(int fd, struct stream *st, size_t len, int flags)
{
	static __thread unsigned char buf[BUF_SIZE];

	while (len) {
		size_t n = len < sizeof(buf) ? len : sizeof(buf);
		ssize_t r;

		pattern(st->seed, st->off, buf, n);
		r = send(fd, buf, n, flags | MSG_NOSIGNAL);
		if (r <= 0)
			die("%s: send", probe_name);
		st->off += r;
		len -= r;
	}
}

/* One recv() into a checked stream; errno is kept for the caller. */
ssize_t recv_pat(int fd, struct stream *st, size_t len, int flags)
{
	static __thread unsigned char buf[BUF_SIZE];
	ssize_t r;
	int err;

	if (len > sizeof(buf))
		len = sizeof(buf);
	r = recv(fd, buf, len, flags);
	err = errno;
	if (r > 0 && !(flags & MSG_PEEK))
		check(st, buf, r);
	else if (r > 0)
		check(&(struct stream){ st->seed, st->off }, buf, r);
	errno = err;
	return r;
}

/* Read until EOF or an error in pieces of the given sizes; *last gets it. */
uint64_t drain(int fd, struct stream *st, const size_t *pieces,
	       const char **last)
{
	uint64_t total = 0;
	ssize_t r;

	for (int i = 0; ; i++) {
		size_t piece = pieces ? pieces[i % 8] : BUF_SIZE;

		r = recv_pat(fd, st, piece, 0);
		if (r <= 0)
			break;
		total += r;
	}
	*last = ret_fmt(r, errno);
	return total;
}

const size_t odd_pieces[8] = { 1, 7, 100, 4096, 13, 65536, 999, 3 };

/* --- sockets ------------------------------------------------------------- */

void set_int(int fd, int level, int opt, int val)
{
	if (setsockopt(fd, level, opt, &val, sizeof(val)))
		die("%s: setsockopt %d/%d", probe_name, level, opt);
}

void set_rcvtimeo(int fd, int ms)
{
	struct timeval tv = { .tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000 };

	if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)))
		die("SO_RCVTIMEO");
}

static socklen_t fill_addr(struct sockaddr_storage *ss, bool listener)
{
	struct sockaddr_in *sin = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;

	memset(ss, 0, sizeof(*ss));
	/* -m: the listener is [::], the client a plain AF_INET socket. */
	if (mode == '6' || (mode == 'm' && listener)) {
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(port);
		sin6->sin6_addr = mode == '6' ? in6addr_loopback : in6addr_any;
		return sizeof(*sin6);
	}
	sin->sin_family = AF_INET;
	sin->sin_port = htons(port);
	sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	return sizeof(*sin);
}

int listener(void)
{
	struct sockaddr_storage ss;
	socklen_t len = fill_addr(&ss, true);
	int fd, one = 1, v6only = mode == '6';

	fd = socket(ss.ss_family, SOCK_STREAM, 0);
	if (fd < 0)
		die("socket");
	/* Earlier probes leave TIME_WAIT sockets on the port. */
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (ss.ss_family == AF_INET6 &&
	    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof(v6only)))
		die("IPV6_V6ONLY");
	if (bind(fd, (struct sockaddr *)&ss, len) || listen(fd, 64))
		die("%s: bind/listen on port %d", probe_name, port);
	if (listen_lowat)
		set_int(fd, SOL_SOCKET, SO_RCVLOWAT, listen_lowat);
	if (listen_setup)
		listen_setup(fd);
	return fd;
}

int client(void)
{
	struct sockaddr_storage ss;
	socklen_t len = fill_addr(&ss, false);
	int fd = socket(ss.ss_family, SOCK_STREAM, 0);

	if (fd >= 0 && client_setup)
		client_setup(fd);
	if (fd < 0 || connect(fd, (struct sockaddr *)&ss, len))
		die("%s: connect to port %d", probe_name, port);
	return fd;
}

static void xfer_byte(int from, int to, char c)
{
	char got = 0;

	if (send(from, &c, 1, MSG_NOSIGNAL) != 1 || recv(to, &got, 1, 0) != 1 || got != c)
		die("%s: handshake", probe_name);
}

/*
 * Payload bytes that TCP itself delivered to fd.  tcpi_bytes_received
 * follows rcv_nxt, which also counts a received FIN as one: take it out.
 */
uint64_t bytes_received(int fd)
{
	struct tcp_info ti = {};
	socklen_t len = sizeof(ti);
	bool fin;

	if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len))
		die("TCP_INFO");
	fin = ti.tcpi_state == TCP_STATE_CLOSE_WAIT || ti.tcpi_state == TCP_STATE_LAST_ACK ||
	      ti.tcpi_state == TCP_STATE_CLOSING || ti.tcpi_state == TCP_STATE_TIME_WAIT;
	return ti.tcpi_bytes_received - fin;
}

/* Which way the handshake went: TCP counts only bytes it carried itself. */
const char *path_of(uint64_t bytes_via_tcp, uint64_t bytes_sent)
{
	if (bytes_via_tcp == 0)
		return "bypass";
	return bytes_via_tcp == bytes_sent ? "tcp" : "mixed";
}

/*
 * The handshake with a client in another process: 'S' and 'C' as in
 * pair_open(), then 'G' once the path is measured, so that the client's
 * payload (and FIN) cannot come in before.
 */
void handshake_srv(int srv)
{
	char c = 0;

	if (send(srv, "S", 1, MSG_NOSIGNAL) != 1 || recv(srv, &c, 1, 0) != 1 || c != 'C')
		die("%s: handshake", probe_name);
	probe_path = path_of(bytes_received(srv), 1);
	if (send(srv, "G", 1, MSG_NOSIGNAL) != 1)
		die("%s: handshake", probe_name);
}

void handshake_cli(int cli)
{
	char c = 0, g = 0;

	if (recv(cli, &c, 1, 0) != 1 || c != 'S' || send(cli, "C", 1, MSG_NOSIGNAL) != 1 ||
	    recv(cli, &g, 1, 0) != 1 || g != 'G')
		die("%s: handshake", probe_name);
}

/*
 * A connected pair whose both ends are in the sockhash (with the bypass)
 * before the probe's first byte: see the comment at the top.
 */
void pair_open(struct pair *p)
{
	int lfd = listener();

	p->cli = client();
	p->srv = accept(lfd, NULL, NULL);
	if (p->srv < 0)
		die("accept");
	close(lfd);
	xfer_byte(p->srv, p->cli, 'S');
	xfer_byte(p->cli, p->srv, 'C');
	probe_path = path_of(bytes_received(p->srv) + bytes_received(p->cli), 2);
}

void pair_close(struct pair *p)
{
	if (p->cli >= 0)
		close(p->cli);
	if (p->srv >= 0)
		close(p->srv);
	p->cli = p->srv = -1;
}

bool wait_state(int fd, int state)
{
	for (int i = 0; i < WAIT_MS; i++) {
		struct tcp_info ti = {};
		socklen_t len = sizeof(ti);

		if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len))
			die("TCP_INFO");
		if (ti.tcpi_state == state)
			return true;
		usleep(1000);
	}
	return false;
}

int inq(int fd)
{
	int n = -1;

	if (ioctl(fd, FIONREAD, &n))
		return -1;
	return n;
}

/* Wait until fd has at least n bytes to read; FIONREAD is probed on its own. */
void wait_inq(int fd, int n)
{
	for (int i = 0; i < WAIT_MS && inq(fd) < n; i++)
		usleep(1000);
}

/*
 * Make sure the kernel stamps received packets before a probe asks for
 * receive timestamps.  The first socket on the host that asks turns them
 * on from a work item (net_enable_timestamp()), so a packet that arrives
 * meanwhile has none; and they go off again when the last such socket
 * closes.  So the first call opens a UDP pair on the loopback with
 * SO_TIMESTAMP, sends datagrams until one comes with its timestamp (at
 * most WAIT_MS), and keeps the receiver open for the life of the process:
 * from then on timestamps stay on, and a probe's SO_TIMESTAMP takes effect
 * at once.  UDP: the bypass never sees it.
 */
void timestamps_on(void)
{
	static int keep = -1;
	struct sockaddr_in a = { .sin_family = AF_INET,
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(a);
	int tx;

	if (keep >= 0)
		return;
	keep = socket(AF_INET, SOCK_DGRAM, 0);
	tx = socket(AF_INET, SOCK_DGRAM, 0);
	if (keep < 0 || tx < 0 || bind(keep, (struct sockaddr *)&a, sizeof(a)) ||
	    getsockname(keep, (struct sockaddr *)&a, &len))
		die("timestamps_on: udp");
	set_int(keep, SOL_SOCKET, SO_TIMESTAMP, 1);
	for (int i = 0; i < WAIT_MS; i++) {
		union {
			char buf[256];
			struct cmsghdr align;
		} ctl;
		char c;
		struct iovec iov = { &c, 1 };
		struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1,
				     .msg_control = ctl.buf, .msg_controllen = sizeof(ctl) };

		if (sendto(tx, "t", 1, 0, (struct sockaddr *)&a, sizeof(a)) != 1)
			die("timestamps_on: sendto");
		if (recvmsg(keep, &mh, 0) == 1 && CMSG_FIRSTHDR(&mh))
			break;
		usleep(1000);
	}
	close(tx);
}

/* Wait until every byte fd sent is acknowledged (SIOCOUTQ: unsent + unacked). */
void wait_acked(int fd)
{
	int n = -1;

	for (int i = 0; i < WAIT_MS; i++) {
		if (!ioctl(fd, SIOCOUTQ, &n) && n == 0)
			return;
		usleep(1000);
	}
}

/* Wait up to ms until poll() reports any of events; returns what it did. */
short wait_events_ms(int fd, short events, int ms)
{
	struct pollfd p = { .fd = fd, .events = events };

	for (int i = 0; i < ms; i++) {
		p.revents = 0;
		if (poll(&p, 1, 1) > 0 && (p.revents & events))
			break;
	}
	return p.revents;
}

short wait_events(int fd, short events)
{
	return wait_events_ms(fd, events, WAIT_MS);
}

short poll_now(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLIN | POLLPRI | POLLOUT | POLLRDHUP };

	if (poll(&p, 1, 0) < 0)
		die("poll");
	return p.revents;
}

/* --- a sender thread, for payloads larger than the socket buffers --------- */

static void send_file(struct sender *s)
{
	unsigned char *buf = malloc(s->len);
	int mfd = memfd_create("sockprobe", 0);
	off_t off = 0;

	if (!buf || mfd < 0)
		die("memfd");
	pattern(s->st.seed, s->st.off, buf, s->len);
	if (write(mfd, buf, s->len) != (ssize_t)s->len)
		die("write memfd");
	while ((size_t)off < s->len) {
		ssize_t r = sendfile(s->fd, mfd, &off, s->len - off);

		if (r <= 0)
			die("%s: sendfile", probe_name);
	}
	s->st.off += s->len;
	close(mfd);
	free(buf);
}

static void send_splice(struct sender *s)
{
	static unsigned char buf[64 * KiB];
	int pfd[2];

	if (pipe(pfd))
		die("pipe");
	while (s->len) {
		size_t n = s->len < sizeof(buf) ? s->len : sizeof(buf);
		ssize_t w;

		pattern(s->st.seed, s->st.off, buf, n);
		w = write(pfd[1], buf, n);
		if (w <= 0)
			die("write pipe");
		for (ssize_t left = w; left > 0; ) {
			ssize_t r = splice(pfd[0], NULL, s->fd, NULL, left, SPLICE_F_MOVE);

			if (r <= 0)
				die("%s: splice", probe_name);
			left -= r;
		}
		s->st.off += w;
		s->len -= w;
	}
	close(pfd[0]);
	close(pfd[1]);
}

static void *sender_main(void *arg)
{
	struct sender *s = arg;

	__atomic_store_n(&s->tid, gettid(), __ATOMIC_RELEASE);
	if (s->kind == SEND_SENDFILE) {
		send_file(s);
	} else if (s->kind == SEND_SPLICE) {
		send_splice(s);
	} else {
		for (size_t left = s->len; left; ) {
			size_t n = left < s->chunk ? left : s->chunk;

			send_pat(s->fd, &s->st, n, 0);
			left -= n;
			if (left && s->gap_ms)
				msleep(s->gap_ms);
		}
	}
	if (s->after == AFTER_SHUT)
		shutdown(s->fd, SHUT_WR);
	else if (s->after == AFTER_CLOSE)
		close(s->fd);
	else if (s->after == AFTER_OOB && send(s->fd, "X", 1, MSG_OOB | MSG_NOSIGNAL) != 1)
		die("%s: send MSG_OOB", probe_name);
	__atomic_store_n(&s->done, true, __ATOMIC_RELEASE);
	return NULL;
}

void sender_start(struct sender *s)
{
	if (!s->chunk)
		s->chunk = BUF_SIZE;
	if (pthread_create(&s->th, NULL, sender_main, s))
		die("pthread_create");
}

/* Wait until the sender is held back (asleep in send()) or has finished. */
void sender_wait(struct sender *s)
{
	for (int i = 0; i < WAIT_MS; i++) {
		int tid = __atomic_load_n(&s->tid, __ATOMIC_ACQUIRE);

		if (__atomic_load_n(&s->done, __ATOMIC_ACQUIRE) ||
		    (tid && thread_state(tid) == 'S'))
			return;
		usleep(1000);
	}
}

void sender_join(struct sender *s)
{
	pthread_join(s->th, NULL);
}

/* --- a reader thread that is already blocked in recv() ------------------- */

static void *reader_main(void *arg)
{
	struct reader *rd = arg;

	__atomic_store_n(&rd->tid, gettid(), __ATOMIC_RELEASE);
	while (rd->n < 8) {
		ssize_t r = recv_pat(rd->fd, &rd->st, rd->len, rd->flags);

		snprintf(rd->res[rd->n], sizeof(rd->res[0]), "%s", ret_fmt(r, errno));
		__atomic_add_fetch(&rd->n, 1, __ATOMIC_RELEASE);
		if (r <= 0)
			break;
	}
	__atomic_store_n(&rd->done, true, __ATOMIC_RELEASE);
	return NULL;
}

void reader_start(struct reader *rd)
{
	if (!rd->len)
		rd->len = BUF_SIZE;
	if (pthread_create(&rd->th, NULL, reader_main, rd))
		die("pthread_create");
}

/* The state letter of a thread of ours, from /proc: 'S' is asleep. */
char thread_state(int tid)
{
	char path[64], buf[256], *p;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/self/task/%d/stat", tid);
	f = fopen(path, "r");
	if (!f)
		return 0;
	p = fgets(buf, sizeof(buf), f);
	fclose(f);
	/* "tid (comm) S ...": the state follows the last ')'. */
	p = p ? strrchr(buf, ')') : NULL;
	return p && p[1] == ' ' ? p[2] : 0;
}

/*
 * Wait until the reader sleeps (in recv(): it does nothing else) or has
 * finished.  A sleep of fixed length is not enough on a loaded machine.
 */
void wait_blocked(struct reader *rd)
{
	for (int i = 0; i < WAIT_MS; i++) {
		int tid = __atomic_load_n(&rd->tid, __ATOMIC_ACQUIRE);

		if (__atomic_load_n(&rd->done, __ATOMIC_ACQUIRE) ||
		    (tid && thread_state(tid) == 'S'))
			return;
		usleep(1000);
	}
}

/* Wait up to ms for the reader to have n results. */
void wait_results(struct reader *rd, int n, int ms)
{
	for (int i = 0; i < ms && __atomic_load_n(&rd->n, __ATOMIC_ACQUIRE) < n; i++)
		usleep(1000);
}

/* Join the reader and add its results as "name=r1,r2,...". */
void reader_join(struct reader *rd, const char *name)
{
	char buf[256] = "";
	size_t len = 0;

	pthread_join(rd->th, NULL);
	for (int i = 0; i < rd->n; i++)
		len += snprintf(buf + len, sizeof(buf) - len, "%s%s", i ? "," : "", rd->res[i]);
	add("%s=%s", name, buf);
}

/* --- main ----------------------------------------------------------------- */

/*
 * Every family's table, in the order -l lists the probes and "all" runs
 * them.  A new probe goes into its family's table; a new family, here.
 */
static const struct probe *const families[] = {
	eof_probes,
	read_probes,
	poll_probes,
	send_probes,
	close_probes,
	map_probes,
	flow_probes,
	opts_probes,
};
#define N_FAMILIES (sizeof(families) / sizeof(families[0]))

static void run(const struct probe *pr)
{
	begin(pr->name);
	pr->fn();
	end();
}

/* Run every probe that ARG names ("all": every one not run by name only). */
static bool run_matching(const char *arg)
{
	bool all = !strcmp(arg, "all"), found = false;

	for (size_t i = 0; i < N_FAMILIES; i++) {
		for (const struct probe *pr = families[i]; pr->name; pr++) {
			if ((all && !pr->not_in_all) || !strcmp(arg, pr->name)) {
				run(pr);
				found = true;
			}
		}
	}
	return found;
}

static void list(void)
{
	for (size_t i = 0; i < N_FAMILIES; i++)
		for (const struct probe *pr = families[i]; pr->name; pr++)
			printf("%s\n", pr->name);
}

static void usage(void)
{
	fprintf(stderr,
		"usage: sockprobe [-4|-6|-m] [-p PORT] [-P] PROBE... | all\n"
		"       sockprobe -l\n"
		"  -4  127.0.0.1 (default)   -6  ::1   -m  AF_INET client, [::] listener\n"
		"  -p  listener port (default 30000)   -P  add path=bypass|tcp\n"
		"  -M  the pinned sockhash, for delete_queued and late_peer\n"
		"      (not in \"all\")\n"
		"  -l  list the probes\n");
	exit(2);
}

int main(int argc, char **argv)
{
	int c;

	while ((c = getopt(argc, argv, "46mp:PM:l")) != -1) {
		switch (c) {
		case '4': case '6': case 'm': mode = c; break;
		case 'p': port = atoi(optarg); break;
		case 'M': map_pin = optarg; break;
		case 'P': show_path = true; break;
		case 'l': list(); return 0;
		default: usage();
		}
	}
	if (optind >= argc || port <= 0 || port > 65535)
		usage();
	signal(SIGPIPE, SIG_IGN);
	/*
	 * Receive timestamps on from the start, for every probe: called only
	 * by the probes that ask for them, after reply_blocking had run in
	 * the same process, plain TCP's cmsg came without its timestamp on
	 * 6.18 (not understood yet).
	 */
	timestamps_on();
	signal(SIGALRM, on_alarm);
	for (int i = optind; i < argc; i++) {
		if (!run_matching(argv[i])) {
			fprintf(stderr, "sockprobe: no probe named %s (see -l)\n", argv[i]);
			return 2;
		}
	}
	return 0;
}
