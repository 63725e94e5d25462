// SPDX-License-Identifier: GPL-2.0
/*
 * xfer - checksummed TCP transfers, to prove the bypass loses, reorders and
 * corrupts nothing.
 *
 *   xfer recv [-b ADDR] -p PORT [-n CONNS] [-z MS | -Z FILE]
 *   xfer send [-a ADDR] -p PORT [-B BYTES] [-R BYTES] [-P STREAMS] [-C CONNS]
 *             [-l WRITE_SIZE] [-s SEED]
 *
 * Each connection starts with a header from the sender: a seed and how many
 * bytes go each way.  Then both ends stream at once: the sender sends BYTES
 * of a pseudo-random pattern, the receiver sends back BYTES_BACK (-R) of
 * another pattern, and each end checks every byte it gets against the
 * pattern at that offset, so a lost, reordered or foreign byte is caught at
 * its exact offset.  Each end half-closes when done and reads to EOF.
 *
 * "recv" accepts CONNS connections (default 1), each in a thread, prints one
 * summary line and exits 0 only if every connection was intact.  "send" runs
 * STREAMS threads (-P) that make CONNS connections (-C) in all, one after the
 * other per thread.  -z MS makes the receiver stop reading for MS ms after
 * its first MiB, as a slow reader would; -Z FILE makes it stop until FILE
 * exists, so that a test decides when it reads on.
 *
 * Each summary line also says how many of the bytes this end received came
 * by TCP (tcp_in=): TCP_INFO's tcpi_bytes_received counts only what TCP
 * itself carried, so it is 0 for a connection the bypass carried, and the
 * tests hold the bypass's counters to it.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <linux/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "lib/util.h"

#define XFER_MAGIC	0x78666572u	/* "xfer" */
#define BUF_SIZE	(256 * 1024)

struct header {
	uint32_t magic;
	uint32_t seed;
	uint64_t fwd;		/* bytes sender -> receiver */
	uint64_t back;		/* bytes receiver -> sender */
};

struct opts {
	const char *addr;
	int port;
	uint64_t fwd, back;
	int streams, conns, wsize, pause_ms;
	const char *pause_file;
	uint32_t seed;
};

static struct opts o = {
	.port = -1, .fwd = 1 << 20, .streams = 1, .conns = 0,
	.wsize = 64 * 1024,
};

static atomic_int next_conn, n_ok, n_bad;
static atomic_ullong bytes_in, bytes_out, tcp_in;

/* One direction of a stream: how far it got and its pattern seed. */
struct dir {
	uint32_t seed;
	uint64_t want, done;
};

/*
 * Add what TCP itself delivered to fd, once it has read EOF, to tcp_in.
 * tcpi_bytes_received follows rcv_nxt, which also counts the FIN (it comes
 * by TCP even when the bytes did not): take it out.
 */
static void count_tcp_in(int fd)
{
	struct tcp_info ti = {};
	socklen_t len = sizeof(ti);

	if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len))
		die("xfer: TCP_INFO");
	atomic_fetch_add(&tcp_in, ti.tcpi_bytes_received - 1);
}

/* The slow reader's pause: -z MS, or until -Z FILE exists. */
static void pause_reading(void)
{
	if (!o.pause_file) {
		usleep(o.pause_ms * 1000);
		return;
	}
	while (access(o.pause_file, F_OK))
		usleep(10 * 1000);
}

/*
 * Send tx and receive rx at the same time on one blocking socket, using
 * poll() and MSG_DONTWAIT, so that neither end can deadlock the other with
 * full buffers.  Returns 0 if rx arrived whole and intact, then EOF.
 */
static int stream(int fd, struct dir *tx, struct dir *rx, int wsize, bool pause)
{
	static __thread unsigned char out[BUF_SIZE], in[BUF_SIZE], exp[BUF_SIZE];
	bool paused = !pause, wr_shut = false, eof = false;

	while (!eof || !wr_shut) {
		struct pollfd p = { .fd = fd };
		ssize_t n;

		if (!wr_shut && tx->done == tx->want) {
			shutdown(fd, SHUT_WR);
			wr_shut = true;
		}
		p.events = (wr_shut ? 0 : POLLOUT) | (eof ? 0 : POLLIN);
		if (!p.events)
			break;
		if (poll(&p, 1, 30000) <= 0) {
			fprintf(stderr, "xfer: stalled: sent %llu/%llu, got %llu/%llu\n",
				(unsigned long long)tx->done, (unsigned long long)tx->want,
				(unsigned long long)rx->done, (unsigned long long)rx->want);
			return -1;
		}
		if (!wr_shut && (p.revents & (POLLOUT | POLLERR))) {
			size_t len = tx->want - tx->done;

			if (len > (size_t)wsize)
				len = wsize;
			pattern(tx->seed, tx->done, out, len);
			n = send(fd, out, len, MSG_DONTWAIT | MSG_NOSIGNAL);
			if (n < 0 && errno != EAGAIN) {
				perror("xfer: send");
				return -1;
			}
			if (n > 0) {
				tx->done += n;
				atomic_fetch_add(&bytes_out, n);
			}
		}
		if (!eof && (p.revents & (POLLIN | POLLHUP | POLLERR))) {
			n = recv(fd, in, sizeof(in), MSG_DONTWAIT);
			if (n < 0 && errno != EAGAIN) {
				perror("xfer: recv");
				return -1;
			}
			if (n == 0)
				eof = true;
			if (n > 0) {
				pattern(rx->seed, rx->done, exp, n);
				if (memcmp(in, exp, n) || rx->done + n > rx->want) {
					fprintf(stderr, "xfer: wrong data at offset %llu\n",
						(unsigned long long)rx->done);
					return -1;
				}
				rx->done += n;
				atomic_fetch_add(&bytes_in, n);
			}
			if (!paused && rx->done >= (1 << 20)) {
				paused = true;
				pause_reading();
			}
		}
	}
	if (rx->done != rx->want) {
		fprintf(stderr, "xfer: EOF after %llu of %llu bytes\n",
			(unsigned long long)rx->done, (unsigned long long)rx->want);
		return -1;
	}
	count_tcp_in(fd);
	return 0;
}

static void *serve_one(void *arg)
{
	int fd = (intptr_t)arg;
	struct header h;
	struct dir tx = {}, rx = {};
	int ok = -1;

	if (recv(fd, &h, sizeof(h), MSG_WAITALL) != sizeof(h) || h.magic != XFER_MAGIC) {
		fprintf(stderr, "xfer: bad header\n");
	} else {
		rx = (struct dir){ .seed = h.seed, .want = h.fwd };
		tx = (struct dir){ .seed = ~h.seed, .want = h.back };
		ok = stream(fd, &tx, &rx, o.wsize, o.pause_ms || o.pause_file);
	}
	close(fd);
	atomic_fetch_add(ok ? &n_bad : &n_ok, 1);
	return NULL;
}

static int do_recv(void)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int lfd, one = 1, zero = 0, conns = o.conns ? o.conns : 1;

	if (!parse_addr(o.addr ? o.addr : "127.0.0.1", o.port, &ss, &len))
		die("xfer: bad address");
	lfd = socket(ss.ss_family, SOCK_STREAM, 0);
	if (lfd < 0)
		die("socket");
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	/* "::" accepts IPv4 too, as iperf3 -s does. */
	if (ss.ss_family == AF_INET6)
		setsockopt(lfd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
	if (bind(lfd, (struct sockaddr *)&ss, len) || listen(lfd, 1024))
		die("xfer: bind/listen port %d", o.port);
	printf("listening\n");
	fflush(stdout);

	pthread_t *th = calloc(conns, sizeof(*th));
	int running = 0;

	for (int i = 0; i < conns; i++) {
		int fd = accept(lfd, NULL, NULL);

		if (fd < 0)
			die("accept");
		/* Reap finished threads so 10,000 connections need no 10,000 stacks. */
		if (running >= 64) {
			pthread_join(th[i - running], NULL);
			running--;
		}
		if (pthread_create(&th[i], NULL, serve_one, (void *)(intptr_t)fd))
			die("pthread_create");
		running++;
	}
	for (int i = conns - running; i < conns; i++)
		pthread_join(th[i], NULL);
	printf("recv: conns=%d ok=%d bad=%d bytes_in=%llu bytes_out=%llu tcp_in=%llu\n",
	       conns, n_ok, n_bad, bytes_in, bytes_out, tcp_in);
	return n_bad || n_ok != conns;
}

static int send_one(uint32_t seed)
{
	struct sockaddr_storage ss;
	socklen_t len;
	struct header h = { XFER_MAGIC, seed, o.fwd, o.back };
	struct dir tx = { .seed = seed, .want = o.fwd };
	struct dir rx = { .seed = ~seed, .want = o.back };
	int fd, ret;

	if (!parse_addr(o.addr ? o.addr : "127.0.0.1", o.port, &ss, &len))
		die("xfer: bad address");
	fd = socket(ss.ss_family, SOCK_STREAM, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&ss, len)) {
		perror("xfer: connect");
		return -1;
	}
	if (send(fd, &h, sizeof(h), MSG_NOSIGNAL) != sizeof(h)) {
		perror("xfer: send header");
		close(fd);
		return -1;
	}
	ret = stream(fd, &tx, &rx, o.wsize, false);
	close(fd);
	return ret;
}

static void *send_worker(void *arg)
{
	(void)arg;
	for (;;) {
		int i = atomic_fetch_add(&next_conn, 1);

		if (i >= o.conns)
			return NULL;
		atomic_fetch_add(send_one(o.seed + i) ? &n_bad : &n_ok, 1);
	}
}

static int do_send(void)
{
	pthread_t th[256];

	if (!o.conns)
		o.conns = o.streams;
	if (o.streams < 1 || o.streams > 256)
		die("xfer: -P takes 1 to 256");
	for (int i = 0; i < o.streams; i++)
		if (pthread_create(&th[i], NULL, send_worker, NULL))
			die("pthread_create");
	for (int i = 0; i < o.streams; i++)
		pthread_join(th[i], NULL);
	printf("send: conns=%d ok=%d bad=%d bytes_out=%llu bytes_in=%llu tcp_in=%llu\n",
	       o.conns, n_ok, n_bad, bytes_out, bytes_in, tcp_in);
	return n_bad || n_ok != o.conns;
}

static void usage(void)
{
	fprintf(stderr,
		"usage: xfer recv [-b ADDR] -p PORT [-n CONNS] [-z MS | -Z FILE]\n"
		"       xfer send [-a ADDR] -p PORT [-B BYTES] [-R BYTES] [-P STREAMS]\n"
		"                 [-C CONNS] [-l WRITE_SIZE] [-s SEED]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	int c;

	if (argc < 2)
		usage();
	o.seed = getpid();
	while ((c = getopt(argc - 1, argv + 1, "a:b:p:n:z:Z:B:R:P:C:l:s:")) != -1) {
		switch (c) {
		case 'a': case 'b': o.addr = optarg; break;
		case 'p': o.port = atoi(optarg); break;
		case 'n': case 'C': o.conns = atoi(optarg); break;
		case 'z': o.pause_ms = atoi(optarg); break;
		case 'Z': o.pause_file = optarg; break;
		case 'B': o.fwd = strtoull(optarg, NULL, 0); break;
		case 'R': o.back = strtoull(optarg, NULL, 0); break;
		case 'P': o.streams = atoi(optarg); break;
		case 'l': o.wsize = atoi(optarg); break;
		case 's': o.seed = strtoul(optarg, NULL, 0); break;
		default: usage();
		}
	}
	if (o.port < 0 || o.wsize < 1 || o.wsize > BUF_SIZE)
		usage();
	if (!strcmp(argv[1], "recv"))
		return do_recv();
	if (!strcmp(argv[1], "send"))
		return do_send();
	usage();
}
