// SPDX-License-Identifier: GPL-2.0
/*
 * sockbench - one harness for loopback TCP, TCP with the bypass, and Unix
 * domain stream sockets, so that the three are measured by the same loops.
 *
 *   sockbench stream   [-u] [-N] [-p PORT] [-s WRITE_SIZE] [-t SECS] [-r READ_SIZE]
 *   sockbench pingpong [-u] [-p PORT] [-s MSG_SIZE] [-t SECS]
 *   sockbench connect  [-u] [-p PORT] [-t SECS] [-P CLIENTS]
 *   sockbench rpc      [-u] [-p PORT] [-t SECS] [-P CLIENTS] [-R REQUESTS] [-s MSG_SIZE]
 *
 * The bypass is invisible here: "TCP with the bypass" is this same program
 * run in a cgroup that has the sock_ops program attached (bench/bench.sh
 * does that).  -u switches to an AF_UNIX stream socket (abstract address);
 * otherwise the transport is TCP on 127.0.0.1:PORT (0: any free port).
 *
 * The process forks: the parent is the client (the sender), the child the
 * server (the receiver).  Two processes, so that getrusage() gives the CPU
 * time of each end on its own.  -c A,B pins the client to CPU A and the
 * server to CPU B.
 *
 * Every byte is checked.  The payload is a pseudo-random pattern that
 * repeats with a prime period (PERIOD), which no write size divides, so a
 * lost, duplicated or reordered message shows up as a mismatch.  Both ends
 * send straight from the pattern and check with memcmp() against it, which
 * costs the same for every transport.
 *
 *   stream    the client writes WRITE_SIZE bytes per send() for SECS seconds,
 *             then half-closes; the server reads READ_SIZE bytes per recv()
 *             (default 128 KiB) until EOF.  Throughput is the bytes received
 *             over the time from the first send() to EOF.  Nagle stays on,
 *             as for most applications, unless -N sets TCP_NODELAY.
 *   pingpong  the client sends MSG_SIZE bytes, the server reads all of them
 *             and sends them back; one message in flight, TCP_NODELAY on
 *             both ends.  Each round trip is timed; 5% warm-up is dropped.
 *   connect   the client connects, waits for the server to accept and close
 *             (read() returns 0), closes, and starts again.
 *   rpc       short connections, as HTTP/1.0 or a health check makes them:
 *             the client connects, sends REQUESTS requests of MSG_SIZE
 *             bytes (default 1 of 64), each answered by the server with the
 *             same bytes, then closes; the server closes once it reads EOF.
 *             TCP_NODELAY on both ends.  Time to first byte: from before
 *             connect() to the first byte of the first reply (p50, p99).
 *
 * In connect and rpc modes, -P runs CLIENTS clients at once, each a process
 * of its own, and as many server processes accepting on the one listener.
 *
 * One line of JSON goes to stdout per run: the figures, the bytes sent (for
 * bench.sh to compare with the bypass counters) and the user+system CPU
 * time of each end.
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <signal.h>
#include <stddef.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "lib/util.h"

#define PERIOD		65521			/* prime: no write size divides it */
#define MAX_IO		(1024 * 1024)		/* largest send() or recv() */
#define PATTERN_LEN	(PERIOD + MAX_IO)
#define WARMUP_PERCENT	5

/* die() without a stale errno: for failures that are not a system call's. */
#define fail(...) do { errno = 0; die(__VA_ARGS__); } while (0)

enum mode { STREAM, PINGPONG, CONNECT, RPC };

/* Most clients and server processes of -P, and first-byte times kept per client. */
#define MAX_CLIENTS	64
#define MAX_SAMPLES	(1 << 18)

static struct {
	enum mode mode;
	bool unix_sock;
	bool nodelay;		/* stream: TCP_NODELAY on the client */
	int port;
	size_t size;
	size_t rsize;
	double secs;
	int cpu[2];		/* client, server; -1: not pinned */
	int clients;		/* connect, rpc: clients at once */
	int requests;		/* rpc: requests per connection */
	bool size_given;
} o = {
	.size = 64 * 1024, .rsize = 128 * 1024, .secs = 2.0, .cpu = { -1, -1 },
	.clients = 1, .requests = 1,
};

/* Page-aligned, as are the receive buffers: see io_buffer(). */
static unsigned char payload[PATTERN_LEN] __attribute__((aligned(4096)));

/* What the server tells the client over a pipe when it is done. */
struct server_report {
	uint64_t bytes;		/* payload bytes received and checked */
	uint64_t sent;		/* payload bytes sent back (pingpong) */
	uint64_t conns;		/* connections accepted (connect, rpc) */
	double end;		/* CLOCK_MONOTONIC at EOF */
	double cpu;		/* user + system seconds */
	int64_t bad_at;		/* offset of the first wrong byte, or -1 */
};

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static double cpu_time(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
	       ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

/* xorshift32: any fixed, non-repeating byte sequence would do. */
static void fill_pattern(void)
{
	uint32_t x = 2463534242u;
	size_t i;

	for (i = 0; i < PERIOD; i++) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		payload[i] = x;
	}
	for (; i < PATTERN_LEN; i++)
		payload[i] = payload[i - PERIOD];
}

/* The pattern bytes that belong at stream offset @off. */
static const unsigned char *pattern_at(uint64_t off)
{
	return payload + off % PERIOD;
}

/* Offset of the first byte of @buf that differs from the pattern, or -1. */
static int64_t check(const unsigned char *buf, size_t len, uint64_t off)
{
	const unsigned char *want = pattern_at(off);
	size_t i;

	if (!memcmp(buf, want, len))
		return -1;
	for (i = 0; buf[i] == want[i]; i++)
		;
	return off + i;
}

/*
 * A page-aligned buffer.  The kernel copies to and from user memory with
 * "rep movsb", which on some CPUs runs two to three times slower into a
 * destination that is not cache-line aligned (malloc() returns 16-byte
 * alignment): the receiver alone would then set the pace.
 */
static unsigned char *io_buffer(void)
{
	unsigned char *buf = aligned_alloc(4096, MAX_IO);

	if (!buf)
		die("aligned_alloc");
	return buf;
}

static void pin(int cpu)
{
	cpu_set_t set;

	if (cpu < 0)
		return;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	if (sched_setaffinity(0, sizeof(set), &set))
		die("sched_setaffinity %d", cpu);
}

/*
 * fork(), for a child that dies with its parent: a client that fails
 * leaves no server process behind, blocked in accept().
 */
static pid_t fork_child(void)
{
	pid_t parent = getpid(), pid = fork();

	if (pid < 0)
		die("fork");
	if (!pid && (prctl(PR_SET_PDEATHSIG, SIGKILL) || getppid() != parent))
		_exit(1);
	return pid;
}

/* The listening address: 127.0.0.1:port, or an abstract AF_UNIX name. */
static socklen_t server_addr(struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof(*ss));
	if (o.unix_sock) {
		struct sockaddr_un *sun = (struct sockaddr_un *)ss;
		int n;

		sun->sun_family = AF_UNIX;
		/* Abstract: sun_path[0] is NUL, nothing appears on disk. */
		n = snprintf(sun->sun_path + 1, sizeof(sun->sun_path) - 1,
			     "sockbench.%d.%d", getpid(), o.port);
		return offsetof(struct sockaddr_un, sun_path) + 1 + n;
	} else {
		struct sockaddr_in *sin = (struct sockaddr_in *)ss;

		sin->sin_family = AF_INET;
		sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		sin->sin_port = htons(o.port);
		return sizeof(*sin);
	}
}

static int listen_on(struct sockaddr_storage *ss, socklen_t *len)
{
	int one = 1, fd;

	*len = server_addr(ss);
	fd = socket(ss->ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		die("socket");
	if (!o.unix_sock &&
	    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)))
		die("SO_REUSEADDR");
	if (bind(fd, (struct sockaddr *)ss, *len))
		die("bind");
	if (listen(fd, 1024))
		die("listen");
	/* With port 0 the kernel picked one: connect to that. */
	if (getsockname(fd, (struct sockaddr *)ss, len))
		die("getsockname");
	return fd;
}

static int connect_to(const struct sockaddr_storage *ss, socklen_t len)
{
	int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		die("socket");
	if (connect(fd, (const struct sockaddr *)ss, len))
		die("connect");
	return fd;
}

static void nodelay(int fd)
{
	int one = 1;

	if (!o.unix_sock &&
	    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)))
		die("TCP_NODELAY");
}

static void send_all(int fd, const unsigned char *buf, size_t len)
{
	ssize_t n;

	while (len) {
		n = send(fd, buf, len, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			die("send");
		}
		buf += n;
		len -= n;
	}
}

/* Read exactly @len bytes; false on EOF before the first byte. */
static bool recv_all(int fd, unsigned char *buf, size_t len)
{
	size_t got = 0;
	ssize_t n;

	while (got < len) {
		n = recv(fd, buf + got, len - got, 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			die("recv");
		}
		if (n == 0) {
			if (got)
				fail("recv: EOF inside a message");
			return false;
		}
		got += n;
	}
	return true;
}

/* ---- the server side (child) ---- */

static void stream_server(int fd, struct server_report *r, unsigned char *buf)
{
	ssize_t n;

	for (;;) {
		n = recv(fd, buf, o.rsize, 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			die("recv");
		}
		if (n == 0)
			break;
		if (r->bad_at < 0)
			r->bad_at = check(buf, n, r->bytes);
		r->bytes += n;
	}
}

static void pingpong_server(int fd, struct server_report *r, unsigned char *buf)
{
	nodelay(fd);
	while (recv_all(fd, buf, o.size)) {
		if (r->bad_at < 0)
			r->bad_at = check(buf, o.size, r->bytes);
		r->bytes += o.size;
		send_all(fd, buf, o.size);
		r->sent += o.size;
	}
}

static void connect_server(int lfd, struct server_report *r)
{
	int fd;

	for (;;) {
		fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			/* The client shut the listener down: done. */
			if (errno == EINVAL)
				return;
			die("accept");
		}
		close(fd);
		r->conns++;
	}
}

/* One connection of rpc: echo each request, checked, until EOF. */
static void rpc_serve(int fd, struct server_report *r, unsigned char *buf)
{
	uint64_t off = 0;
	int64_t bad;

	nodelay(fd);
	while (recv_all(fd, buf, o.size)) {
		/* Each connection's requests start at pattern offset 0. */
		bad = check(buf, o.size, off);
		if (r->bad_at < 0 && bad >= 0)
			r->bad_at = r->bytes + (bad - off);
		off += o.size;
		r->bytes += o.size;
		send_all(fd, buf, o.size);
		r->sent += o.size;
	}
}

static void rpc_server(int lfd, struct server_report *r, unsigned char *buf)
{
	int fd;

	for (;;) {
		fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno == EINVAL)
				return;
			die("accept");
		}
		rpc_serve(fd, r, buf);
		close(fd);
		r->conns++;
	}
}

/* Memory that forked processes share: each writes its own slot. */
static void *shared(size_t len)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
		       MAP_SHARED | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED)
		die("mmap %zu", len);
	return p;
}

/*
 * connect and rpc: o.clients processes accept on the one listener, each
 * fills its slot of @rs; the first sums them into @r.
 */
static void accept_servers(int lfd, struct server_report *r)
{
	struct server_report *rs = shared(MAX_CLIENTS * sizeof(*rs));
	pid_t pids[MAX_CLIENTS];
	int i, status;

	for (i = 0; i < o.clients; i++) {
		rs[i].bad_at = -1;
		pids[i] = i ? fork_child() : 0;
		if (pids[i] && i)
			continue;
		if (o.mode == CONNECT)
			connect_server(lfd, &rs[i]);
		else
			rpc_server(lfd, &rs[i], io_buffer());
		rs[i].cpu = cpu_time();
		if (i)
			exit(0);
	}
	for (i = 1; i < o.clients; i++)
		if (waitpid(pids[i], &status, 0) < 0 || !WIFEXITED(status) ||
		    WEXITSTATUS(status))
			fail("a server process failed");
	for (i = 0; i < o.clients; i++) {
		r->bytes += rs[i].bytes;
		r->sent += rs[i].sent;
		r->conns += rs[i].conns;
		r->cpu += rs[i].cpu;
		if (r->bad_at < 0)
			r->bad_at = rs[i].bad_at;
	}
}

static void server(int lfd, int report_fd)
{
	struct server_report r = { .bad_at = -1 };
	unsigned char *buf;
	double cpu0;
	int fd;

	pin(o.cpu[1]);
	cpu0 = cpu_time();
	if (o.mode == CONNECT || o.mode == RPC) {
		/* Each process counts its own CPU time, from 0 after fork. */
		accept_servers(lfd, &r);
		cpu0 = cpu_time() - r.cpu;
	} else {
		buf = io_buffer();
		fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0)
			die("accept");
		close(lfd);
		if (o.mode == STREAM)
			stream_server(fd, &r, buf);
		else
			pingpong_server(fd, &r, buf);
		close(fd);
	}
	r.end = now();
	r.cpu = cpu_time() - cpu0;
	if (write(report_fd, &r, sizeof(r)) != sizeof(r))
		die("write report");
	exit(0);
}

/* ---- the client side (parent) ---- */

struct client_result {
	uint64_t bytes;		/* payload bytes sent */
	uint64_t ops;		/* send() calls, round trips or connections */
	double start, end;
	double cpu;
	double p50, p99, mean;	/* pingpong, rpc's first byte; microseconds */
	uint64_t bytes_back;	/* rpc: reply bytes received and checked */
};

/* Check the clock only every few writes: a 64-byte send takes ~1 us. */
#define CLOCK_EVERY	64

static void stream_client(int fd, struct client_result *c)
{
	double stop = c->start + o.secs;
	uint64_t off = 0;

	if (o.nodelay)
		nodelay(fd);
	for (;;) {
		send_all(fd, pattern_at(off), o.size);
		off += o.size;
		if (++c->ops % CLOCK_EVERY == 0 && now() >= stop)
			break;
	}
	c->bytes = off;
	if (shutdown(fd, SHUT_WR))
		die("shutdown");
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static void pingpong_client(int fd, struct client_result *c, unsigned char *buf)
{
	double stop = c->start + o.secs, t, sum = 0;
	size_t n = 0, cap = 1 << 16, skip, i;
	double *rtt = malloc(cap * sizeof(*rtt));
	uint64_t off = 0;

	if (!rtt)
		die("malloc");
	nodelay(fd);
	do {
		t = now();
		send_all(fd, pattern_at(off), o.size);
		if (!recv_all(fd, buf, o.size))
			fail("pingpong: server closed");
		if (check(buf, o.size, off) >= 0)
			fail("pingpong: reply differs from the request at message %zu", n);
		off += o.size;
		if (n == cap) {
			cap *= 2;
			rtt = realloc(rtt, cap * sizeof(*rtt));
			if (!rtt)
				die("realloc");
		}
		rtt[n++] = now() - t;
	} while (rtt[n - 1] + t < stop);
	shutdown(fd, SHUT_WR);

	c->bytes = off;
	c->ops = n;
	skip = n * WARMUP_PERCENT / 100;
	n -= skip;
	if (!n)
		fail("pingpong: no round trip completed");
	qsort(rtt + skip, n, sizeof(*rtt), cmp_double);
	for (i = skip; i < skip + n; i++)
		sum += rtt[i];
	c->p50 = rtt[skip + n / 2] * 1e6;
	c->p99 = rtt[skip + n * 99 / 100] * 1e6;
	c->mean = sum / n * 1e6;
	free(rtt);
}

static void connect_client(const struct sockaddr_storage *ss, socklen_t len,
			   struct client_result *c)
{
	double stop = c->start + o.secs;
	char b;
	int fd;

	do {
		fd = connect_to(ss, len);
		/* The server accepts and closes: wait for its FIN. */
		if (read(fd, &b, 1) != 0)
			fail("connect: expected EOF from the server");
		close(fd);
		c->ops++;
	} while (now() < stop);
}

/*
 * rpc: one short connection after the other; @ttfb gets each one's time
 * to first byte, up to MAX_SAMPLES of them.
 */
static void rpc_client(const struct sockaddr_storage *ss, socklen_t len,
		       struct client_result *c, unsigned char *buf, double *ttfb)
{
	double stop = c->start + o.secs, t;
	uint64_t off;
	int fd, i;

	do {
		t = now();
		fd = connect_to(ss, len);
		nodelay(fd);
		for (i = 0, off = 0; i < o.requests; i++, off += o.size) {
			send_all(fd, pattern_at(off), o.size);
			/* The first byte alone, to time it. */
			if (!i && !recv_all(fd, buf, 1))
				fail("rpc: server closed");
			if (!i && c->ops < MAX_SAMPLES)
				ttfb[c->ops] = now() - t;
			if (!recv_all(fd, buf + !i, o.size - !i))
				fail("rpc: server closed");
			if (check(buf, o.size, off) >= 0)
				fail("rpc: reply differs from the request");
			c->bytes += o.size;
			c->bytes_back += o.size;
		}
		/*
		 * Close, and the server closes when it reads EOF.  Not
		 * shutdown() and a read() for the server's EOF: through the
		 * bypass such a read can fail with EAGAIN
		 * (docs/semantics.md).
		 */
		close(fd);
		c->ops++;
	} while (now() < stop);
}

/*
 * connect and rpc: o.clients processes, each with its own slot of @cs and
 * MAX_SAMPLES first-byte times in @ttfb; their figures summed into @c.
 */
static void run_clients(const struct sockaddr_storage *ss, socklen_t len,
			struct client_result *c)
{
	struct client_result *cs = shared(MAX_CLIENTS * sizeof(*cs));
	double *ttfb = NULL, *all, sum = 0;
	pid_t pids[MAX_CLIENTS];
	size_t n = 0, k, i;
	int status;

	if (o.mode == RPC)
		ttfb = shared((size_t)o.clients * MAX_SAMPLES * sizeof(*ttfb));
	for (i = 0; i < (size_t)o.clients; i++) {
		pids[i] = fork_child();
		if (pids[i])
			continue;
		cs[i].start = c->start;
		if (o.mode == CONNECT)
			connect_client(ss, len, &cs[i]);
		else
			rpc_client(ss, len, &cs[i], io_buffer(), ttfb + i * MAX_SAMPLES);
		cs[i].end = now();
		cs[i].cpu = cpu_time();
		exit(0);
	}
	for (i = 0; i < (size_t)o.clients; i++)
		if (waitpid(pids[i], &status, 0) < 0 || !WIFEXITED(status) ||
		    WEXITSTATUS(status))
			fail("a client failed");
	for (i = 0; i < (size_t)o.clients; i++) {
		c->ops += cs[i].ops;
		c->bytes += cs[i].bytes;
		c->bytes_back += cs[i].bytes_back;
		c->cpu += cs[i].cpu;
		if (cs[i].end > c->end)
			c->end = cs[i].end;
	}
	if (!ttfb)
		return;
	all = malloc((size_t)o.clients * MAX_SAMPLES * sizeof(*all));
	if (!all)
		die("malloc");
	for (i = 0; i < (size_t)o.clients; i++)
		for (k = 0; k < cs[i].ops && k < MAX_SAMPLES; k++)
			all[n++] = ttfb[i * MAX_SAMPLES + k];
	if (!n)
		fail("rpc: no connection completed");
	qsort(all, n, sizeof(*all), cmp_double);
	for (k = 0; k < n; k++)
		sum += all[k];
	c->p50 = all[n / 2] * 1e6;
	c->p99 = all[n * 99 / 100] * 1e6;
	c->mean = sum / n * 1e6;
	free(all);
}

static const char *mode_name[] = { "stream", "pingpong", "connect", "rpc" };

static void print_json(const struct client_result *c, const struct server_report *r)
{
	double secs;

	printf("{\"test\":\"%s\",\"transport\":\"%s\",\"size\":%zu,",
	       mode_name[o.mode], o.unix_sock ? "unix" : "tcp",
	       o.mode == CONNECT ? 0 : o.size);
	switch (o.mode) {
	case STREAM:
		secs = r->end - c->start;
		printf("\"bytes\":%llu,\"writes\":%llu,\"secs\":%.6f,\"MBps\":%.2f,",
		       (unsigned long long)r->bytes,
		       (unsigned long long)c->ops, secs, r->bytes / secs / 1e6);
		printf("\"cpu_s_per_GB\":%.4f,",
		       (c->cpu + r->cpu) / (r->bytes / 1e9));
		break;
	case PINGPONG:
		secs = c->end - c->start;
		printf("\"bytes\":%llu,\"round_trips\":%llu,\"secs\":%.6f,",
		       (unsigned long long)(c->bytes + r->sent),
		       (unsigned long long)c->ops, secs);
		printf("\"p50_us\":%.2f,\"p99_us\":%.2f,\"mean_us\":%.2f,",
		       c->p50, c->p99, c->mean);
		break;
	case CONNECT:
		secs = c->end - c->start;
		printf("\"bytes\":0,\"clients\":%d,\"conns\":%llu,\"secs\":%.6f,\"conns_per_s\":%.1f,",
		       o.clients, (unsigned long long)c->ops, secs, c->ops / secs);
		break;
	case RPC:
		secs = c->end - c->start;
		printf("\"bytes\":%llu,\"requests\":%d,\"clients\":%d,\"conns\":%llu,\"secs\":%.6f,\"conns_per_s\":%.1f,",
		       (unsigned long long)(c->bytes + r->sent), o.requests,
		       o.clients, (unsigned long long)c->ops, secs, c->ops / secs);
		printf("\"ttfb_p50_us\":%.2f,\"ttfb_p99_us\":%.2f,\"ttfb_mean_us\":%.2f,",
		       c->p50, c->p99, c->mean);
		break;
	}
	printf("\"cpu_client_s\":%.4f,\"cpu_server_s\":%.4f}\n", c->cpu, r->cpu);
}

static void run(void)
{
	struct client_result c = {};
	struct server_report r;
	struct sockaddr_storage ss;
	unsigned char *buf;
	int lfd, fd = -1, p[2], status;
	socklen_t len;
	double cpu0;
	pid_t pid;

	lfd = listen_on(&ss, &len);
	if (pipe2(p, O_CLOEXEC))
		die("pipe");
	fflush(stdout);
	pid = fork_child();
	if (!pid) {
		close(p[0]);
		server(lfd, p[1]);
	}
	close(p[1]);
	pin(o.cpu[0]);
	buf = io_buffer();

	if (o.mode == STREAM || o.mode == PINGPONG)
		fd = connect_to(&ss, len);
	cpu0 = cpu_time();
	c.start = now();
	switch (o.mode) {
	case STREAM:
		stream_client(fd, &c);
		break;
	case PINGPONG:
		pingpong_client(fd, &c, buf);
		break;
	case CONNECT:
	case RPC:
		run_clients(&ss, len, &c);
		/* Wakes every server's accept() with EINVAL. */
		shutdown(lfd, SHUT_RDWR);
		break;
	}
	c.end = now();

	if (read(p[0], &r, sizeof(r)) != sizeof(r))
		fail("the server exited without a report");
	if (o.mode == STREAM || o.mode == PINGPONG)
		c.cpu = cpu_time() - cpu0;
	if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) ||
	    WEXITSTATUS(status))
		fail("the server failed");
	if (r.bad_at >= 0)
		fail("payload mismatch at byte %lld", (long long)r.bad_at);
	if (o.mode == STREAM && r.bytes != c.bytes)
		fail("sent %llu bytes, received %llu",
		     (unsigned long long)c.bytes, (unsigned long long)r.bytes);
	if (o.mode == RPC && (r.bytes != c.bytes || r.sent != c.bytes_back ||
			      r.conns != c.ops))
		fail("rpc: %llu connections sent %llu bytes and got %llu back; the server saw %llu connections, %llu bytes, sent %llu",
		     (unsigned long long)c.ops, (unsigned long long)c.bytes,
		     (unsigned long long)c.bytes_back, (unsigned long long)r.conns,
		     (unsigned long long)r.bytes, (unsigned long long)r.sent);
	print_json(&c, &r);
	free(buf);
	if (fd >= 0)
		close(fd);
	close(lfd);
}

static void usage(void)
{
	fprintf(stderr,
		"Usage: sockbench stream|pingpong|connect|rpc [-u] [-N] [-p PORT] [-s SIZE]\n"
		"                 [-r READ_SIZE] [-t SECS] [-c CLIENT_CPU,SERVER_CPU]\n"
		"                 [-P CLIENTS] [-R REQUESTS]\n");
	exit(2);
}

static size_t parse_size(const char *s)
{
	char *end;
	unsigned long v = strtoul(s, &end, 0);

	if (*end == 'k' || *end == 'K')
		v *= 1024, end++;
	if (*end || !v || v > MAX_IO)
		fail("bad size %s (1 .. %d)", s, MAX_IO);
	return v;
}

int main(int argc, char **argv)
{
	int opt;

	if (argc < 2)
		usage();
	if (!strcmp(argv[1], "stream"))
		o.mode = STREAM;
	else if (!strcmp(argv[1], "pingpong"))
		o.mode = PINGPONG;
	else if (!strcmp(argv[1], "connect"))
		o.mode = CONNECT;
	else if (!strcmp(argv[1], "rpc"))
		o.mode = RPC;
	else
		usage();
	optind = 2;
	while ((opt = getopt(argc, argv, "uNp:s:r:t:c:P:R:")) != -1) {
		switch (opt) {
		case 'u':
			o.unix_sock = true;
			break;
		case 'N':
			o.nodelay = true;
			break;
		case 'p':
			o.port = atoi(optarg);
			break;
		case 's':
			o.size = parse_size(optarg);
			o.size_given = true;
			break;
		case 'P':
			o.clients = atoi(optarg);
			if (o.clients < 1 || o.clients > MAX_CLIENTS)
				fail("bad -P %s (1 .. %d)", optarg, MAX_CLIENTS);
			break;
		case 'R':
			o.requests = atoi(optarg);
			if (o.requests < 1)
				fail("bad -R %s", optarg);
			break;
		case 'r':
			o.rsize = parse_size(optarg);
			break;
		case 't':
			o.secs = atof(optarg);
			break;
		case 'c':
			if (sscanf(optarg, "%d,%d", &o.cpu[0], &o.cpu[1]) != 2)
				usage();
			break;
		default:
			usage();
		}
	}
	if (optind != argc || o.secs <= 0)
		usage();
	/* A short RPC's request and reply are small. */
	if (o.mode == RPC && !o.size_given)
		o.size = 64;
	fill_pattern();
	run();
	return 0;
}
