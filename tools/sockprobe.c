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
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <linux/sockios.h>
#include <linux/tcp.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/select.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bpf_sockops.h"
#include "tools/util.h"

#define KiB		1024
#define MiB		(1024 * 1024)
#define BUF_SIZE	(256 * KiB)
#define PROBE_TIMEOUT	20	/* seconds before a hung probe is reported */
#define WAIT_MS		3000	/* longest wait for data to arrive */

static char mode = '4';
static int port = 30000;
static bool show_path;
static int listen_lowat;	/* SO_RCVLOWAT on the listener, if not 0 */
static const char *map_pin;	/* -M: the pinned sockhash */

/* The line being built, the probe's name and whether its data was intact. */
static char line[2048];
static size_t line_len;
static const char *probe_name;
static bool data_bad;
static const char *path;

struct pair {
	int cli, srv;
};

/* --- output ------------------------------------------------------------ */

static void __attribute__((format(printf, 1, 2))) add(const char *fmt, ...)
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
static const char *ret_fmt(ssize_t r, int err)
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

/* R(call): run call and format its result with the errno it left. */
#define R(call) ({ ssize_t __r = (call); ret_fmt(__r, errno); })

static const char *events_fmt(unsigned int ev)
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
	path = NULL;
	alarm(PROBE_TIMEOUT);
}

static void add_data(void)
{
	add("data=%s", data_bad ? "BAD" : "ok");
}

static void end(void)
{
	alarm(0);
	printf("%s:%s", probe_name, line);
	if (show_path)
		printf(" path=%s", path ? path : "none");
	printf("\n");
	fflush(stdout);
}

/* --- the payload ---------------------------------------------------------- */


/* One direction of a connection: its pattern seed and how far it got. */
struct stream {
	uint32_t seed;
	uint64_t off;
};

static void check(struct stream *st, const unsigned char *buf, size_t len)
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
static void send_pat(int fd, struct stream *st, size_t len, int flags)
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
static ssize_t recv_pat(int fd, struct stream *st, size_t len, int flags)
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
static uint64_t drain(int fd, struct stream *st, const size_t *pieces,
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

/* --- sockets ------------------------------------------------------------- */

static void set_int(int fd, int level, int opt, int val)
{
	if (setsockopt(fd, level, opt, &val, sizeof(val)))
		die("%s: setsockopt %d/%d", probe_name, level, opt);
}

static void set_rcvtimeo(int fd, int ms)
{
	struct timeval tv = { .tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000 };

	if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)))
		die("SO_RCVTIMEO");
}

static void msleep(int ms)
{
	usleep(ms * 1000);
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

static int listener(void)
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
	return fd;
}

static int client(void)
{
	struct sockaddr_storage ss;
	socklen_t len = fill_addr(&ss, false);
	int fd = socket(ss.ss_family, SOCK_STREAM, 0);

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

/* From the kernel's include/net/tcp_states.h (not exported to user space). */
#define TCP_STATE_FIN_WAIT2	5
#define TCP_STATE_TIME_WAIT	6
#define TCP_STATE_CLOSE_WAIT	8
#define TCP_STATE_LAST_ACK	9
#define TCP_STATE_CLOSING	11

/*
 * Payload bytes that TCP itself delivered to fd.  tcpi_bytes_received
 * follows rcv_nxt, which also counts a received FIN as one: take it out.
 */
static uint64_t bytes_received(int fd)
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
static const char *path_of(uint64_t bytes_via_tcp, uint64_t bytes_sent)
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
static void handshake_srv(int srv)
{
	char c = 0;

	if (send(srv, "S", 1, MSG_NOSIGNAL) != 1 || recv(srv, &c, 1, 0) != 1 || c != 'C')
		die("%s: handshake", probe_name);
	path = path_of(bytes_received(srv), 1);
	if (send(srv, "G", 1, MSG_NOSIGNAL) != 1)
		die("%s: handshake", probe_name);
}

static void handshake_cli(int cli)
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
static void pair_open(struct pair *p)
{
	int lfd = listener();

	p->cli = client();
	p->srv = accept(lfd, NULL, NULL);
	if (p->srv < 0)
		die("accept");
	close(lfd);
	xfer_byte(p->srv, p->cli, 'S');
	xfer_byte(p->cli, p->srv, 'C');
	path = path_of(bytes_received(p->srv) + bytes_received(p->cli), 2);
}

static void pair_close(struct pair *p)
{
	if (p->cli >= 0)
		close(p->cli);
	if (p->srv >= 0)
		close(p->srv);
	p->cli = p->srv = -1;
}

static bool wait_state(int fd, int state)
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

static int inq(int fd)
{
	int n = -1;

	if (ioctl(fd, FIONREAD, &n))
		return -1;
	return n;
}

/* Wait until fd has at least n bytes to read; FIONREAD is probed on its own. */
static void wait_inq(int fd, int n)
{
	for (int i = 0; i < WAIT_MS && inq(fd) < n; i++)
		usleep(1000);
}

/* Wait up to ms until poll() reports any of events; returns what it did. */
static short wait_events_ms(int fd, short events, int ms)
{
	struct pollfd p = { .fd = fd, .events = events };

	for (int i = 0; i < ms; i++) {
		p.revents = 0;
		if (poll(&p, 1, 1) > 0 && (p.revents & events))
			break;
	}
	return p.revents;
}

static short wait_events(int fd, short events)
{
	return wait_events_ms(fd, events, WAIT_MS);
}

static short poll_now(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLIN | POLLPRI | POLLOUT | POLLRDHUP };

	if (poll(&p, 1, 0) < 0)
		die("poll");
	return p.revents;
}

/* --- a sender thread, for payloads larger than the socket buffers --------- */

enum sender_kind { SEND_PLAIN, SEND_SENDFILE, SEND_SPLICE };
enum after { AFTER_NONE, AFTER_SHUT, AFTER_CLOSE };

struct sender {
	pthread_t th;
	int fd;
	struct stream st;
	size_t len, chunk;
	int gap_ms;		/* pause between chunks */
	enum sender_kind kind;
	enum after after;
};

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
	return NULL;
}

static void sender_start(struct sender *s)
{
	if (!s->chunk)
		s->chunk = BUF_SIZE;
	if (pthread_create(&s->th, NULL, sender_main, s))
		die("pthread_create");
}

static void sender_join(struct sender *s)
{
	pthread_join(s->th, NULL);
}

/* --- a reader thread that is already blocked in recv() ------------------- */

struct reader {
	pthread_t th;
	int fd;
	size_t len;
	int flags;
	struct stream st;
	int tid;		/* its thread id, once running */
	int n;			/* results so far; read with __atomic */
	bool done;
	char res[8][32];
};

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

static void reader_start(struct reader *rd)
{
	if (!rd->len)
		rd->len = BUF_SIZE;
	if (pthread_create(&rd->th, NULL, reader_main, rd))
		die("pthread_create");
}

/* The state letter of a thread of ours, from /proc: 'S' is asleep. */
static char thread_state(int tid)
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
static void wait_blocked(struct reader *rd)
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
static void wait_results(struct reader *rd, int n, int ms)
{
	for (int i = 0; i < ms && __atomic_load_n(&rd->n, __ATOMIC_ACQUIRE) < n; i++)
		usleep(1000);
}

/* Join the reader and add its results as "name=r1,r2,...". */
static void reader_join(struct reader *rd, const char *name)
{
	char buf[256] = "";
	size_t len = 0;

	pthread_join(rd->th, NULL);
	for (int i = 0; i < rd->n; i++)
		len += snprintf(buf + len, sizeof(buf) - len, "%s%s", i ? "," : "", rd->res[i]);
	add("%s=%s", name, buf);
}

/* --- probes: EOF and half-close ---------------------------------------- */

static const size_t odd_pieces[8] = { 1, 7, 100, 4096, 13, 65536, 999, 3 };

/* The peer sends, then closes: all data, then 0, and 0 again. */
static void probe_eof_close(void)
{
	struct pair p;
	struct stream tx = { .seed = 1 }, rx = { .seed = 1 };
	const char *last;
	uint64_t n;

	pair_open(&p);
	send_pat(p.cli, &tx, 64 * KiB, 0);
	close(p.cli);
	p.cli = -1;
	n = drain(p.srv, &rx, NULL, &last);
	add("bytes=%llu", (unsigned long long)n);
	add_data();
	add("end=%s", last);
	add("again=%s", R(recv_pat(p.srv, &rx, 100, 0)));
	pair_close(&p);
}

/* shutdown(SHUT_WR): the reader sees EOF, the writer can still read. */
static void probe_eof_shutdown(void)
{
	struct pair p;
	struct stream tx = { .seed = 2 }, rx = { .seed = 2 };
	const char *last;
	uint64_t n;

	pair_open(&p);
	send_pat(p.cli, &tx, 64 * KiB, 0);
	shutdown(p.cli, SHUT_WR);
	n = drain(p.srv, &rx, NULL, &last);
	add("bytes=%llu", (unsigned long long)n);
	add_data();
	add("end=%s", last);
	add("again=%s", R(recv_pat(p.srv, &rx, 100, 0)));
	add("writer_reads=%s", R(recv(p.cli, &(char){ 0 }, 1, MSG_DONTWAIT)));
	pair_close(&p);
}

/* After the client's half-close the server answers, then closes. */
static void probe_reply_after_shutdown(void)
{
	struct pair p;
	struct sender s = { .st = { .seed = 3 }, .len = 512 * KiB, .after = AFTER_SHUT };
	struct stream rx = { .seed = 3 }, back_rx = { .seed = 4 };
	struct sender back = { .st = { .seed = 4 }, .len = 512 * KiB, .after = AFTER_CLOSE };
	const char *last;
	uint64_t n;

	pair_open(&p);
	s.fd = p.cli;
	sender_start(&s);
	n = drain(p.srv, &rx, odd_pieces, &last);
	sender_join(&s);
	add("fwd=%llu end=%s", (unsigned long long)n, last);
	/*
	 * Read the answer only once the FIN is acknowledged: the move to
	 * FIN_WAIT2 wakes a blocked reader (probe reply_blocking).
	 */
	add("fin_acked=%s", wait_state(p.cli, TCP_STATE_FIN_WAIT2) ? "yes" : "no");
	back.fd = p.srv;
	sender_start(&back);
	n = drain(p.cli, &back_rx, NULL, &last);
	sender_join(&back);
	p.srv = -1;
	add("back=%llu end=%s", (unsigned long long)n, last);
	add_data();
	pair_close(&p);
}

/*
 * A reader blocked in recv() (no timeout) when the data arrives, then blocked
 * again when the peer half-closes (after == AFTER_SHUT) or closes: TCP gives
 * the data, then 0.  With "gap" the second recv() is already waiting when
 * the FIN comes; without, data and FIN come back to back.
 */
static void blocking_eof(enum after after, bool gap)
{
	struct pair p;
	struct stream tx = { .seed = 5 };
	struct reader rd = { .st = { .seed = 5 } };

	pair_open(&p);
	rd.fd = p.srv;
	reader_start(&rd);
	wait_blocked(&rd);
	send_pat(p.cli, &tx, 1000, 0);
	if (gap) {
		/* The reader took the data and sleeps again for more. */
		wait_results(&rd, 1, WAIT_MS);
		wait_blocked(&rd);
	}
	if (after == AFTER_SHUT) {
		shutdown(p.cli, SHUT_WR);
	} else {
		close(p.cli);
		p.cli = -1;
	}
	reader_join(&rd, "recvs");
	add_data();
	pair_close(&p);
}

static void probe_eof_blocking_shutdown(void)
{
	blocking_eof(AFTER_SHUT, true);
}

static void probe_eof_blocking_close(void)
{
	blocking_eof(AFTER_CLOSE, true);
}

static void probe_eof_blocking_burst(void)
{
	blocking_eof(AFTER_SHUT, false);
}

/*
 * One thread of the client blocks in recv() for the reply while another
 * sends the request and half-closes; the server replies a moment later.
 * inet_shutdown() ends with sk_state_change(), which wakes every waiter on
 * the socket (so does the FIN_WAIT1 -> FIN_WAIT2 move when the ACK of the
 * FIN comes): TCP's recv() finds nothing to read and goes back to sleep.
 */
static void blocking_reply(size_t reply)
{
	struct pair p;
	struct stream req_tx = { .seed = 30 }, req_rx = { .seed = 30 };
	struct stream tx = { .seed = 29 };
	struct reader rd = { .st = { .seed = 29 } };
	const char *last;
	uint64_t n;

	pair_open(&p);
	rd.fd = p.cli;
	reader_start(&rd);
	wait_blocked(&rd);
	send_pat(p.cli, &req_tx, 1000, 0);
	shutdown(p.cli, SHUT_WR);
	n = drain(p.srv, &req_rx, NULL, &last);
	add("req=%llu end=%s", (unsigned long long)n, last);
	msleep(20);
	if (reply) {
		send_pat(p.srv, &tx, reply, 0);
		shutdown(p.srv, SHUT_WR);
	} else {
		close(p.srv);
		p.srv = -1;
	}
	reader_join(&rd, "recvs");
	add_data();
	pair_close(&p);
}

static void probe_reply_blocking(void)
{
	blocking_reply(1000);
}

/* The same with no reply: the server just closes, and TCP's recv() gives 0. */
static void probe_halfclose_blocking(void)
{
	blocking_reply(0);
}

static volatile sig_atomic_t usr1_seen;

static void on_usr1(int sig)
{
	(void)sig;
	usr1_seen = 1;
}

/*
 * A signal reaches a reader blocked in recv().  With SA_RESTART, TCP
 * restarts the call and it returns the data sent later; without, EINTR.
 */
static void blocking_signal(int sa_flags)
{
	struct sigaction sa = { .sa_handler = on_usr1, .sa_flags = sa_flags };
	struct pair p;
	struct stream tx = { .seed = 31 };
	struct reader rd = { .st = { .seed = 31 } };

	sigemptyset(&sa.sa_mask);
	sigaction(SIGUSR1, &sa, NULL);
	pair_open(&p);
	rd.fd = p.srv;
	reader_start(&rd);
	wait_blocked(&rd);
	usr1_seen = 0;
	pthread_kill(rd.th, SIGUSR1);
	for (int i = 0; i < WAIT_MS && !usr1_seen; i++)
		usleep(1000);
	/* The call returned, or (SA_RESTART under TCP) sleeps again. */
	wait_blocked(&rd);
	send_pat(p.cli, &tx, 1000, 0);
	wait_results(&rd, 1, WAIT_MS);
	shutdown(p.cli, SHUT_WR);
	reader_join(&rd, "recvs");
	add_data();
	pair_close(&p);
	signal(SIGUSR1, SIG_DFL);
}

static void probe_signal_restart(void)
{
	blocking_signal(SA_RESTART);
}

static void probe_signal_eintr(void)
{
	blocking_signal(0);
}

/*
 * Both ends send, half-close, then read to EOF.  Each end's data fits in
 * the socket buffers, so nobody reads while the other end shuts down: a
 * shutdown() wakes readers blocked on the same socket (see reply_blocking).
 */
static void probe_shutdown_both(void)
{
	struct pair p;
	struct stream ta = { .seed = 6 }, tb = { .seed = 7 };
	struct stream ra = { .seed = 6 }, rb = { .seed = 7 };
	const char *last;
	uint64_t n;

	pair_open(&p);
	send_pat(p.cli, &ta, 64 * KiB, 0);
	send_pat(p.srv, &tb, 64 * KiB, 0);
	shutdown(p.cli, SHUT_WR);
	shutdown(p.srv, SHUT_WR);
	/* Both FINs in: no read below has to sleep. */
	wait_events(p.cli, POLLRDHUP);
	wait_events(p.srv, POLLRDHUP);
	n = drain(p.cli, &rb, odd_pieces, &last);
	add("cli_got=%llu end=%s", (unsigned long long)n, last);
	n = drain(p.srv, &ra, NULL, &last);
	add("srv_got=%llu end=%s", (unsigned long long)n, last);
	add_data();
	pair_close(&p);
}

/* --- probes: reading ------------------------------------------------------ */

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

	pair_open(&p);
	set_int(p.srv, SOL_SOCKET, SO_TIMESTAMP, 1);
	set_int(p.srv, IPPROTO_TCP, TCP_INQ, 1);
	/*
	 * The first SO_TIMESTAMP on the host turns on receive timestamps from
	 * a work item (net_enable_timestamp()); let it run.
	 */
	msleep(20);
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

/* --- probes: readiness ---------------------------------------------------- */

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

/* --- probes: senders ------------------------------------------------------ */

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
 * and a non-blocking sender gets EAGAIN.  Stops at 64 MiB either way.
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
	while (tx.off < 64 * MiB) {
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

/* --- probes: closing ------------------------------------------------------ */

/* The reader closes with unread data: TCP resets, the peer sees ECONNRESET. */
static void probe_rst_unread(void)
{
	struct pair p;
	struct stream tx = { .seed = 23 };

	pair_open(&p);
	send_pat(p.cli, &tx, 100, 0);
	wait_inq(p.srv, 100);
	close(p.srv);
	p.srv = -1;
	add("poll=%s", events_fmt(wait_events(p.cli, POLLRDHUP | POLLERR | POLLHUP)));
	add("recv=%s", R(recv(p.cli, &(char){ 0 }, 1, MSG_DONTWAIT)));
	add("send=%s", R(send(p.cli, "x", 1, MSG_NOSIGNAL)));
	pair_close(&p);
}

/* SO_LINGER {1, 0}: close() resets; data sent before it is still readable. */
static void probe_linger0(void)
{
	struct pair p;
	struct stream tx = { .seed = 24 };
	struct reader rd = { .st = { .seed = 24 } };
	struct linger lg = { 1, 0 };

	pair_open(&p);
	send_pat(p.cli, &tx, 1000, 0);
	wait_inq(p.srv, 1000);
	if (setsockopt(p.cli, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)))
		die("SO_LINGER");
	close(p.cli);
	p.cli = -1;
	add("poll=%s", events_fmt(wait_events(p.srv, POLLERR | POLLHUP)));
	rd.fd = p.srv;
	rd.flags = MSG_DONTWAIT;
	reader_start(&rd);
	reader_join(&rd, "recvs");
	add_data();
	pair_close(&p);
}

/* Writing to a peer that closed: the first write goes, then EPIPE. */
static void probe_write_after_close(void)
{
	struct pair p;

	pair_open(&p);
	close(p.srv);
	p.srv = -1;
	wait_events(p.cli, POLLRDHUP);
	add("recv=%s", R(recv(p.cli, &(char){ 0 }, 1, 0)));
	add("send1=%s", R(send(p.cli, "0123456789", 10, MSG_NOSIGNAL)));
	add("poll=%s", events_fmt(wait_events(p.cli, POLLERR | POLLHUP)));
	add("send2=%s", R(send(p.cli, "0123456789", 10, MSG_NOSIGNAL)));
	add("recv2=%s", R(recv(p.cli, &(char){ 0 }, 1, 0)));
	pair_close(&p);
}

/* 2 MiB written then close() at once, read slowly: nothing is lost. */
static void probe_close_inflight(void)
{
	struct pair p;
	struct sender s = { .st = { .seed = 25 }, .len = 2 * MiB, .chunk = 256 * KiB,
			    .after = AFTER_CLOSE };
	struct stream rx = { .seed = 25 };
	const char *last;
	uint64_t n;

	pair_open(&p);
	s.fd = p.cli;
	sender_start(&s);
	msleep(20);
	n = drain(p.srv, &rx, odd_pieces, &last);
	sender_join(&s);
	p.cli = -1;
	add("bytes=%llu", (unsigned long long)n);
	add_data();
	add("end=%s", last);
	pair_close(&p);
}

/* shutdown(SHUT_RD) on the reader: queued data, then 0. */
static void probe_shutdown_rd(void)
{
	struct pair p;
	struct stream tx = { .seed = 26 }, rx = { .seed = 26 };

	pair_open(&p);
	send_pat(p.cli, &tx, 100, 0);
	wait_inq(p.srv, 100);
	shutdown(p.srv, SHUT_RD);
	add("poll=%s", events_fmt(poll_now(p.srv)));
	add("recv=%s", R(recv_pat(p.srv, &rx, 1000, MSG_DONTWAIT)));
	add("again=%s", R(recv_pat(p.srv, &rx, 1000, MSG_DONTWAIT)));
	add_data();
	pair_close(&p);
}

/*
 * A child process connects, sends, and _exit()s; the kernel closes its
 * socket.  With unread != 0 the parent first sends the child bytes it never
 * reads, which turns the child's close into a reset under TCP.
 */
static void child_client(size_t unread)
{
	struct stream tx = { .seed = 27 };
	int fd;

	alarm(PROBE_TIMEOUT);
	fd = client();
	handshake_cli(fd);
	if (unread)
		wait_inq(fd, unread);
	send_pat(fd, &tx, 64 * KiB, 0);
	_exit(0);
}

static void peer_exit(size_t unread)
{
	struct stream rx = { .seed = 27 }, tx = { .seed = 28 };
	struct reader rd = { .st = { .seed = 27 } };
	int lfd = listener(), srv, status;
	pid_t pid;

	fflush(stdout);
	pid = fork();
	if (pid < 0)
		die("fork");
	if (!pid)
		child_client(unread);
	srv = accept(lfd, NULL, NULL);
	if (srv < 0)
		die("accept");
	close(lfd);
	handshake_srv(srv);
	if (unread)
		send_pat(srv, &tx, unread, 0);
	waitpid(pid, &status, 0);
	add("child=%d", WIFEXITED(status) ? WEXITSTATUS(status) : -1);
	wait_events(srv, POLLRDHUP | POLLERR);
	/* TCP's reset, if one comes, follows at once. */
	if (unread)
		wait_events_ms(srv, POLLERR | POLLHUP, 200);
	rd.fd = srv;
	rd.flags = MSG_DONTWAIT;
	reader_start(&rd);
	reader_join(&rd, "recvs");
	(void)rx;
	add_data();
	close(srv);
}

static void probe_peer_exit(void)
{
	peer_exit(0);
}

static void probe_peer_exit_unread(void)
{
	peer_exit(500);
}

/*
 * No handshake: the client writes the moment connect() returns, 20 times.
 * Whatever path each write takes, the bytes must arrive whole and in order.
 */
static void probe_send_after_connect(void)
{
	int lfd = listener(), bad = 0, total = 0;

	for (int i = 0; i < 20; i++) {
		struct stream tx = { .seed = 100 + i }, rx = { .seed = 100 + i };
		const char *last;
		int cli = client(), srv;

		for (int j = 0; j < 16; j++)
			send_pat(cli, &tx, 1 * KiB, 0);
		close(cli);
		srv = accept(lfd, NULL, NULL);
		if (srv < 0)
			die("accept");
		total += drain(srv, &rx, odd_pieces, &last);
		bad += data_bad || rx.off != 16 * KiB;
		data_bad = false;
		close(srv);
	}
	close(lfd);
	add("conns=20 bytes=%d bad=%d", total, bad);
}

/* --- the sockhash: what removing a socket does to its queued bytes ------- */

/*
 * The address part of the key bpf_sockops stored this socket under (see
 * bpf_sockops.h); the initial sequence numbers are not known here.
 */
static void sock_key_of(int fd, struct sock_key *key)
{
	struct sockaddr_in6 a[2];
	socklen_t len = sizeof(a[0]), clen = sizeof(key->netns);
	__u32 *ip[2] = { key->local_ip, key->remote_ip };

	memset(key, 0, sizeof(*key));
	memset(a, 0, sizeof(a));
	if (getsockname(fd, (struct sockaddr *)&a[0], &len) ||
	    getpeername(fd, (struct sockaddr *)&a[1], &(socklen_t){ sizeof(a[1]) }) ||
	    getsockopt(fd, SOL_SOCKET, SO_NETNS_COOKIE, &key->netns, &clen))
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
}

static bool same_tuple(const struct sock_key *a, const struct sock_key *b)
{
	return a->netns == b->netns && a->local_port == b->local_port &&
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
		key.netns = ck.netns;
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
 * bpf_redir's use_tcp latch sends B by TCP too, behind A.
 *
 * The listener's SO_RCVLOWAT of 2, inherited by the accepted socket, makes
 * bpf_sockops leave the server out of the sockhash (sockets_skipped); the
 * mark is back to 1 before any byte is read.  The counters see exactly two
 * client sends, A and B, and no server send.
 */
static void probe_late_peer(void)
{
	static unsigned char got[2 * LATE_CHUNK];
	struct stream tx = { .seed = 35 };
	int lfd, cli, srv, ret;
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
	path = path_of(bytes_received(srv), n);
	close(cli);
	close(srv);
}

/* --- main ----------------------------------------------------------------- */

struct probe {
	const char *name;
	void (*fn)(void);
	bool not_in_all;	/* needs the bypass: run only by name */
};

#define PROBE(n) { #n, probe_##n, false }
static const struct probe probes[] = {
	PROBE(eof_close),
	PROBE(eof_shutdown),
	PROBE(reply_after_shutdown),
	PROBE(eof_blocking_shutdown),
	PROBE(eof_blocking_close),
	PROBE(eof_blocking_burst),
	PROBE(reply_blocking),
	PROBE(halfclose_blocking),
	PROBE(signal_restart),
	PROBE(signal_eintr),
	PROBE(shutdown_both),
	PROBE(peek),
	PROBE(dontwait),
	PROBE(fionread),
	PROBE(peek_off),
	PROBE(cmsg),
	PROBE(trunc),
	PROBE(rcvtimeo),
	PROBE(waitall),
	PROBE(rcvlowat_recv),
	PROBE(poll),
	PROBE(select),
	PROBE(epoll_lt),
	PROBE(epoll_et),
	PROBE(rcvlowat_poll),
	PROBE(rcvlowat_listener),
	PROBE(bulk),
	PROBE(iovec),
	PROBE(sendfile),
	PROBE(splice_send),
	PROBE(splice_recv),
	PROBE(cork),
	PROBE(oob),
	PROBE(backpressure),
	PROBE(rst_unread),
	PROBE(linger0),
	PROBE(write_after_close),
	PROBE(close_inflight),
	PROBE(shutdown_rd),
	PROBE(peer_exit),
	PROBE(peer_exit_unread),
	PROBE(send_after_connect),
	{ "delete_queued", probe_delete_queued, true },
	{ "late_peer", probe_late_peer, true },
};
#define N_PROBES (sizeof(probes) / sizeof(probes[0]))

static void run(const struct probe *pr)
{
	begin(pr->name);
	pr->fn();
	end();
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
		case 'l':
			for (size_t i = 0; i < N_PROBES; i++)
				printf("%s\n", probes[i].name);
			return 0;
		default: usage();
		}
	}
	if (optind >= argc || port <= 0 || port > 65535)
		usage();
	signal(SIGPIPE, SIG_IGN);
	signal(SIGALRM, on_alarm);
	for (int i = optind; i < argc; i++) {
		bool found = false;

		for (size_t j = 0; j < N_PROBES; j++) {
			if ((!strcmp(argv[i], "all") && !probes[j].not_in_all) ||
			    !strcmp(argv[i], probes[j].name)) {
				run(&probes[j]);
				found = true;
			}
		}
		if (!found) {
			fprintf(stderr, "sockprobe: no probe named %s (see -l)\n", argv[i]);
			return 2;
		}
	}
	return 0;
}
