// SPDX-License-Identifier: GPL-2.0
/*
 * flow - one connection streaming for a while to a reader that pauses, to
 * prove that a connection can fall back to TCP and come back to the bypass,
 * again and again, without losing, reordering or stalling a byte.
 *
 *   flow recv [-b ADDR] -p PORT [-r MODE] [-w SIZE] [-z READ_MS:PAUSE_MS]
 *             [-S FILE] [-B RCVBUF]
 *   flow send [-a ADDR] -p PORT [-t SECONDS] [-l SIZE | -l MIN:MAX] [-x]
 *             [-R MB_S] [-z READ_MS:PAUSE_MS] [-s SEED]
 *
 * The sender connects, sends a header (seed, duration, write sizes, -x),
 * and writes the test pattern (lib/util.h) for SECONDS (default 10), SIZE
 * bytes a write (default 65536), or a size drawn from MIN to MAX for each
 * write, at most MB_S MB a second with -R (a writer slower than its reader
 * when it reads); then it half-closes.  With -x the receiver streams back the same
 * way at the same time, and each end reads the other's stream.
 *
 * The receiver reads with MODE:
 *   plain    blocking recv() of up to 256 KiB (default)
 *   poll     poll(), then recv(MSG_DONTWAIT), as event-driven servers do
 *   waitall  blocking recv(MSG_WAITALL) of 100,000, 4,096 and 65,543 bytes
 *            in turn, or of -w SIZE bytes: inside tcp_recvmsg() such a
 *            reader sleeps until it has them all
 *   lowat    SO_RCVLOWAT of 16 KiB set on the accepted socket, after the
 *            handshake, then blocking recv()
 *   threads  two threads in blocking recv() on the one socket at once
 * With -z it reads for READ_MS, then stops for PAUSE_MS, again and again.
 * With -B the accepted socket sets SO_RCVBUF to RCVBUF after the handshake,
 * whatever the mode.
 * Every byte is checked against the pattern where it lands; a thread of
 * "threads" does not know where its bytes land, so it finds the offset from
 * the bytes (the pattern is invertible) and the pieces of both threads must
 * tile the stream exactly, each thread's in order.
 *
 * Once a second the receiver prints how much it got so far and how much of
 * that came by TCP (TCP_INFO's tcpi_bytes_received counts only what TCP
 * itself carried), and with -S it writes the same line to FILE.  A reader
 * that makes no progress for STALL_SECS while bytes are still due is
 * reported ("stalled") and the program exits 3: a test never hangs.
 *
 * The last line of each end, exit 0 only if ok=1:
 *   flow recv: mode=M bytes_in=N tcp_in=N bytes_out=N pieces=N ok=1
 *   flow send: bytes_out=N writes=N bytes_in=N tcp_in=N ok=1
 *
 * (tcp_in: of bytes_in, those that came by TCP.)  -z works at the sending
 * end too, for its reader of the stream coming back (-x).
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

#define FLOW_MAGIC	0x666c6f77u	/* "flow" */
#define BUF_SIZE	(256 * 1024)
#define STALL_SECS	15
#define MAX_PIECES	(4 << 20)

enum mode { PLAIN, POLL, WAITALL, LOWAT, THREADS };
static const char *const mode_names[] = { "plain", "poll", "waitall", "lowat", "threads" };

struct header {
	uint32_t magic;
	uint32_t seed;
	uint32_t msecs;		/* how long each end writes */
	uint32_t wmin, wmax;	/* write sizes */
	uint32_t both;		/* the receiver streams back too */
	uint32_t pad;
};

static struct {
	const char *addr, *stats_file;
	int port, read_ms, pause_ms, waitall, rcvbuf;
	double rate;		/* -R: bytes per ms a writer sends at most */
	enum mode mode;
	struct header h;
} o = {
	.port = -1, .h = { .msecs = 10000, .wmin = 65536, .wmax = 65536 },
};

/* One direction: what its writer sent, what its reader got. */
struct dir {
	int fd;
	uint32_t seed;
	atomic_ullong got;	/* bytes read and checked */
	atomic_bool eof, bad;
	unsigned long long sent, writes;
};

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000ull + ts.tv_nsec / 1000000;
}

/* --- the pattern, and where a piece of it comes from --------------------- */

/* The inverse of lib/util.h's splitmix(): each of its steps is a bijection. */
static uint64_t unxorshift(uint64_t y, int s)
{
	uint64_t x = y;

	for (int i = s; i < 64; i += s)
		x = y ^ (x >> s);
	return x;
}

static uint64_t inv_odd(uint64_t c)
{
	uint64_t x = c;	/* Newton: correct to 3, 6, 12, 24, 48, 96 bits */

	for (int i = 0; i < 5; i++)
		x *= 2 - c * x;
	return x;
}

static uint64_t unsplitmix(uint64_t z)
{
	z = unxorshift(z, 31);
	z *= inv_odd(0x94d049bb133111ebull);
	z = unxorshift(z, 27);
	z *= inv_odd(0xbf58476d1ce4e5b9ull);
	z = unxorshift(z, 30);
	return z - 0x9e3779b97f4a7c15ull;
}

static bool matches(uint32_t seed, uint64_t off, const unsigned char *buf, size_t len)
{
	static __thread unsigned char exp[BUF_SIZE];

	pattern(seed, off, exp, len);
	return !memcmp(buf, exp, len);
}

/*
 * Where in stream SEED the piece buf[0..len) starts: -1 if no 8 aligned
 * bytes of it (it needs 15) tell, or if it is not from the stream.
 */
static int64_t locate(uint32_t seed, const unsigned char *buf, size_t len)
{
	uint64_t base = (uint64_t)seed << 40;

	for (size_t a = 0; a < 8 && a + 8 <= len; a++) {
		uint64_t v = 0, k;

		/* A record is 8 bytes of splitmix(base + k), little endian. */
		for (int b = 7; b >= 0; b--)
			v = v << 8 | buf[a + b];
		k = unsplitmix(v) - base;
		if (k >= 1ull << 40 || k * 8 < a)
			continue;
		if (matches(seed, k * 8 - a, buf, len))
			return k * 8 - a;
	}
	return -1;
}

/* --- writing ------------------------------------------------------------- */

static uint64_t rng_state;

static uint32_t next_size(uint64_t *s)
{
	if (o.h.wmin == o.h.wmax)
		return o.h.wmin;
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return o.h.wmin + *s % (o.h.wmax - o.h.wmin + 1);
}

static void *writer(void *arg)
{
	static __thread unsigned char out[BUF_SIZE];
	struct dir *d = arg;
	uint64_t start = now_ms(), end = start + o.h.msecs, s = rng_state ^ d->seed;
	unsigned long long paced = 0;	/* bytes sent since start */

	while (now_ms() < end) {
		size_t len = next_size(&s), done = 0;

		/*
		 * -R: ahead of the rate?  Wait until it catches up.  Held back
		 * by the reader, it does not catch up afterwards: a pace, not
		 * a quota.
		 */
		if (o.rate) {
			double ahead = paced / o.rate - (now_ms() - start);

			if (ahead > 1) {
				usleep(ahead * 1000);
			} else if (ahead < -10) {
				start = now_ms();
				paced = 0;
			}
			paced += len;
		}
		pattern(d->seed, d->sent, out, len);
		while (done < len) {
			ssize_t n = send(d->fd, out + done, len - done, MSG_NOSIGNAL);

			if (n < 0) {
				if (errno == EINTR)
					continue;
				perror("flow: send");
				atomic_store(&d->bad, true);
				return NULL;
			}
			done += n;
		}
		d->sent += len;
		d->writes++;
	}
	if (shutdown(d->fd, SHUT_WR))
		perror("flow: shutdown");
	return NULL;
}

/* --- reading ------------------------------------------------------------- */

struct piece {
	uint64_t off;
	uint32_t len;
	uint8_t thread;
	unsigned char small[15];	/* a piece too short to locate */
};

static struct piece *pieces;
static atomic_ulong n_pieces;

static void bad(struct dir *d, const char *what, unsigned long long off)
{
	fprintf(stderr, "flow: %s at offset %llu\n", what, off);
	atomic_store(&d->bad, true);
}

/* Wait out the reader's pause, if it is time for one. */
static void maybe_pause(uint64_t *since)
{
	if (!o.pause_ms || now_ms() - *since < (uint64_t)o.read_ms)
		return;
	usleep(o.pause_ms * 1000);
	*since = now_ms();
}

static void reader_loop(struct dir *d, int thread)
{
	static const size_t waitall_sizes[] = { 100000, 4096, 65543 };
	unsigned char *in = malloc(BUF_SIZE);
	uint64_t since = now_ms(), off = 0;
	unsigned int turn = 0;

	if (!in)
		die("malloc");
	while (!atomic_load(&d->eof) && !atomic_load(&d->bad)) {
		size_t len = BUF_SIZE;
		int flags = 0;
		ssize_t n;

		maybe_pause(&since);
		if (o.mode == WAITALL) {
			len = o.waitall ? (size_t)o.waitall : waitall_sizes[turn++ % 3];
			flags = MSG_WAITALL;
		}
		if (o.mode == POLL) {
			struct pollfd p = { .fd = d->fd, .events = POLLIN };

			if (poll(&p, 1, 1000) < 0 && errno != EINTR)
				die("flow: poll");
			flags = MSG_DONTWAIT;
		}
		n = recv(d->fd, in, len, flags);
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				continue;
			perror("flow: recv");
			atomic_store(&d->bad, true);
			break;
		}
		if (n == 0) {
			atomic_store(&d->eof, true);
			break;
		}
		if (o.mode != THREADS) {
			if (!matches(d->seed, off, in, n))
				bad(d, "wrong data", off);
			off += n;
			atomic_fetch_add(&d->got, n);
			continue;
		}
		/* Two readers: find where the piece goes, check it later. */
		unsigned long i = atomic_fetch_add(&n_pieces, 1);
		struct piece *p = &pieces[i];
		int64_t at = locate(d->seed, in, n);

		if (i >= MAX_PIECES)
			die("flow: more than %d pieces", MAX_PIECES);
		p->len = n;
		p->thread = thread;
		if (at >= 0) {
			p->off = at;
		} else if (n < (ssize_t)sizeof(p->small)) {
			p->off = UINT64_MAX;
			memcpy(p->small, in, n);
		} else {
			bad(d, "a piece from no offset of the stream", 0);
		}
		atomic_fetch_add(&d->got, n);
	}
	free(in);
}

struct reader_arg {
	struct dir *d;
	int thread;
};

static void *reader(void *arg)
{
	struct reader_arg *a = arg;

	reader_loop(a->d, a->thread);
	return NULL;
}

static int cmp_piece(const void *a, const void *b)
{
	const struct piece *x = a, *y = b;

	return x->off < y->off ? -1 : x->off > y->off;
}

/* Fill [*at, upto) of the stream with the pieces too short to locate. */
static bool fill(struct dir *d, uint64_t *at, uint64_t upto, unsigned long from,
		 unsigned long n)
{
	while (*at < upto) {
		unsigned long j;

		for (j = from; j < n; j++)
			if (pieces[j].len && *at + pieces[j].len <= upto &&
			    matches(d->seed, *at, pieces[j].small, pieces[j].len))
				break;
		if (j == n) {
			bad(d, "a gap", *at);
			return false;
		}
		*at += pieces[j].len;
		pieces[j].len = 0;
	}
	return true;
}

/*
 * The two readers' pieces must tile [0, total) exactly, each thread's in
 * the order it read them.  Pieces too short to locate fill the gaps left,
 * where their bytes match.
 */
static bool tiles(struct dir *d, unsigned long long total)
{
	unsigned long n = atomic_load(&n_pieces), small = 0;
	uint64_t last[2] = { 0, 0 }, at = 0;

	for (unsigned long i = 0; i < n; i++) {
		struct piece *p = &pieces[i];

		if (p->off == UINT64_MAX) {
			small++;
			continue;
		}
		if (p->off < last[p->thread]) {
			bad(d, "a thread read a piece out of order", p->off);
			return false;
		}
		last[p->thread] = p->off + p->len;
	}
	/* Located pieces by offset; the short ones (UINT64_MAX) last. */
	qsort(pieces, n, sizeof(*pieces), cmp_piece);
	for (unsigned long i = 0; i < n - small; i++) {
		if (!fill(d, &at, pieces[i].off, n - small, n))
			return false;
		if (pieces[i].off != at) {
			bad(d, "an overlap", pieces[i].off);
			return false;
		}
		at += pieces[i].len;
	}
	return fill(d, &at, total, n - small, n);
}

/* --- the receiver's report ----------------------------------------------- */

static unsigned long long tcp_bytes(int fd)
{
	struct tcp_info ti = {};
	socklen_t len = sizeof(ti);

	if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len))
		return 0;
	return ti.tcpi_bytes_received;
}

/*
 * What came by TCP once the stream ended: tcpi_bytes_received follows
 * rcv_nxt, which also counts the peer's FIN, which comes by TCP even when
 * the bytes did not.
 */
static unsigned long long tcp_in(int fd)
{
	unsigned long long n = tcp_bytes(fd);

	return n ? n - 1 : 0;
}

struct watch {
	struct dir *d;
	atomic_bool done;
};

/* Once a second: progress, for the tests and for people; and the stall check. */
static void *watcher(void *arg)
{
	struct watch *w = arg;
	unsigned long long last = 0;
	FILE *f = o.stats_file ? fopen(o.stats_file, "w") : NULL;
	int idle = 0;

	for (int t = 1; !atomic_load(&w->done); t++) {
		unsigned long long got;

		for (int i = 0; i < 10 && !atomic_load(&w->done); i++)
			usleep(100 * 1000);
		got = atomic_load(&w->d->got);
		printf("flow: t=%d got=%llu tcp=%llu\n", t, got, tcp_bytes(w->d->fd));
		fflush(stdout);
		if (f) {
			fprintf(f, "t=%d got=%llu tcp=%llu\n", t, got, tcp_bytes(w->d->fd));
			fflush(f);
		}
		idle = got == last ? idle + 1 : 0;
		last = got;
		/* A reader that pauses still reads within READ_MS + PAUSE_MS. */
		if (idle * 1000 > STALL_SECS * 1000 + o.pause_ms) {
			fprintf(stderr, "flow: stalled: no byte read for %d s after %llu bytes\n",
				idle, got);
			exit(3);
		}
	}
	if (f)
		fclose(f);
	return NULL;
}

/* --- the two ends -------------------------------------------------------- */

/*
 * Both ends: write `out` (if it is to be written) and read `in` at once,
 * with the reader's mode at the receiving end and plain reads at the other.
 */
static bool run(struct dir *out, struct dir *in, bool write, bool receiver)
{
	pthread_t w, r[2];
	struct reader_arg ra[2] = { { in, 0 }, { in, 1 } };
	struct watch wa = { .d = in };
	pthread_t wt;
	int readers = receiver && o.mode == THREADS ? 2 : 1;

	if (!receiver)
		o.mode = PLAIN;
	if (write && pthread_create(&w, NULL, writer, out))
		die("pthread_create");
	if (receiver && pthread_create(&wt, NULL, watcher, &wa))
		die("pthread_create");
	for (int i = 0; i < readers; i++)
		if (pthread_create(&r[i], NULL, reader, &ra[i]))
			die("pthread_create");
	for (int i = 0; i < readers; i++)
		pthread_join(r[i], NULL);
	if (write)
		pthread_join(w, NULL);
	if (receiver) {
		atomic_store(&wa.done, true);
		pthread_join(wt, NULL);
	}
	if (readers == 2)
		return !atomic_load(&in->bad) && tiles(in, atomic_load(&in->got));
	return !atomic_load(&in->bad) && !atomic_load(&out->bad);
}

static int do_recv(void)
{
	struct sockaddr_storage ss;
	socklen_t len;
	struct header h;
	struct dir in = {}, out = {};
	int lfd, fd, one = 1, zero = 0;
	bool ok;

	if (!parse_addr(o.addr ? o.addr : "127.0.0.1", o.port, &ss, &len))
		die("flow: bad address");
	lfd = socket(ss.ss_family, SOCK_STREAM, 0);
	if (lfd < 0)
		die("socket");
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (ss.ss_family == AF_INET6)
		setsockopt(lfd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
	if (bind(lfd, (struct sockaddr *)&ss, len) || listen(lfd, 8))
		die("flow: bind/listen port %d", o.port);
	printf("listening\n");
	fflush(stdout);
	fd = accept(lfd, NULL, NULL);
	if (fd < 0)
		die("accept");
	close(lfd);
	if (recv(fd, &h, sizeof(h), MSG_WAITALL) != sizeof(h) || h.magic != FLOW_MAGIC)
		die("flow: bad header");
	o.h = h;
	if (o.mode == LOWAT) {
		int lowat = 16 * 1024;

		if (setsockopt(fd, SOL_SOCKET, SO_RCVLOWAT, &lowat, sizeof(lowat)))
			die("flow: SO_RCVLOWAT");
	}
	if (o.rcvbuf &&
	    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &o.rcvbuf, sizeof(o.rcvbuf)))
		die("flow: SO_RCVBUF");
	in = (struct dir){ .fd = fd, .seed = h.seed };
	out = (struct dir){ .fd = fd, .seed = ~h.seed };
	rng_state = h.seed * 0x9e3779b97f4a7c15ull | 1;
	ok = run(&out, &in, h.both, true);
	printf("flow recv: mode=%s bytes_in=%llu tcp_in=%llu bytes_out=%llu pieces=%lu ok=%d\n",
	       mode_names[o.mode], (unsigned long long)atomic_load(&in.got),
	       tcp_in(fd), out.sent, atomic_load(&n_pieces), ok);
	close(fd);
	return ok ? 0 : 1;
}

static int do_send(void)
{
	struct sockaddr_storage ss;
	socklen_t len;
	struct dir in = {}, out = {};
	int fd;
	bool ok;

	if (!parse_addr(o.addr ? o.addr : "127.0.0.1", o.port, &ss, &len))
		die("flow: bad address");
	fd = socket(ss.ss_family, SOCK_STREAM, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&ss, len))
		die("flow: connect");
	o.h.magic = FLOW_MAGIC;
	if (send(fd, &o.h, sizeof(o.h), MSG_NOSIGNAL) != sizeof(o.h))
		die("flow: send header");
	out = (struct dir){ .fd = fd, .seed = o.h.seed };
	in = (struct dir){ .fd = fd, .seed = ~o.h.seed };
	rng_state = o.h.seed * 0x9e3779b97f4a7c15ull | 1;
	/* Without -x the receiver sends nothing: its EOF is all there is to read. */
	ok = run(&out, &in, true, false);
	printf("flow send: bytes_out=%llu writes=%llu bytes_in=%llu tcp_in=%llu ok=%d\n",
	       out.sent, out.writes, (unsigned long long)atomic_load(&in.got),
	       tcp_in(fd), ok);
	close(fd);
	return ok ? 0 : 1;
}

static void usage(void)
{
	fprintf(stderr,
		"usage: flow recv [-b ADDR] -p PORT [-r plain|poll|waitall|lowat|threads]\n"
		"                 [-w SIZE] [-z READ_MS:PAUSE_MS] [-S FILE] [-B RCVBUF]\n"
		"       flow send [-a ADDR] -p PORT [-t SECONDS] [-l SIZE | -l MIN:MAX]\n"
		"                 [-x] [-R MB_S] [-z READ_MS:PAUSE_MS] [-s SEED]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	int c;

	if (argc < 2)
		usage();
	o.h.seed = getpid();
	while ((c = getopt(argc - 1, argv + 1, "a:b:p:r:w:z:S:t:l:xR:s:B:")) != -1) {
		switch (c) {
		case 'a': case 'b': o.addr = optarg; break;
		case 'p': o.port = atoi(optarg); break;
		case 'r':
			for (o.mode = 0; o.mode <= THREADS; o.mode++)
				if (!strcmp(optarg, mode_names[o.mode]))
					break;
			if (o.mode > THREADS)
				usage();
			break;
		case 'z':
			if (sscanf(optarg, "%d:%d", &o.read_ms, &o.pause_ms) != 2)
				usage();
			break;
		case 'S': o.stats_file = optarg; break;
		case 'w': o.waitall = atoi(optarg); break;
		case 'B': o.rcvbuf = atoi(optarg); break;
		case 't': o.h.msecs = atof(optarg) * 1000; break;
		case 'l':
			if (sscanf(optarg, "%u:%u", &o.h.wmin, &o.h.wmax) != 2)
				o.h.wmax = o.h.wmin;
			break;
		case 'x': o.h.both = 1; break;
		case 'R': o.rate = atof(optarg) * 1000; break;
		case 's': o.h.seed = strtoul(optarg, NULL, 0); break;
		default: usage();
		}
	}
	if (o.port < 0 || !o.h.wmin || o.h.wmin > o.h.wmax || o.h.wmax > BUF_SIZE ||
	    o.waitall < 0 || o.waitall > BUF_SIZE)
		usage();
	if (o.mode == THREADS) {
		pieces = calloc(MAX_PIECES, sizeof(*pieces));
		if (!pieces)
			die("calloc");
	}
	if (!strcmp(argv[1], "recv"))
		return do_recv();
	if (!strcmp(argv[1], "send"))
		return do_send();
	usage();
}
