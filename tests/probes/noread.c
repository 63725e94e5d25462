// SPDX-License-Identifier: GPL-2.0
/*
 * noread - fill a connection whose reader does not read, and see what it
 * costs the host.
 *
 *   noread [-a ADDR] -p PORT [-l WRITE_SIZE] [-n WRITES] [-c CAP_BYTES] [-w]
 *          [-r READ_FIRST] [-b RCVBUF | -B RCVBUF]
 *
 * One process connects to a listener of its own on ADDR:PORT (default
 * 127.0.0.1), never reads the accepted socket, and writes WRITE_SIZE bytes
 * at a time (default 65536) of the test pattern, non-blocking, until the
 * kernel says EAGAIN, or after WRITES writes, or CAP_BYTES bytes (default:
 * no limit).  Plain TCP says EAGAIN once the receive and send buffers are
 * full: a few MiB.  Then it prints how much the sender got rid of and how
 * much the host's unreclaimable slab (SUnreclaim in /proc/meminfo) and TCP
 * memory (/proc/net/sockstat) grew meanwhile, reads everything back, checks
 * every byte against the pattern, and prints one line:
 *
 *   noread: write=65536 writes=N accepted=BYTES stop=eagain|writes|cap|ENOMEM
 *           slab_kib=+N tcp_mem_kib=+N drained=BYTES intact=1
 *
 * With -r, the reader first reads READ_FIRST bytes as they come (checked),
 * and only then stops reading: a reader that read, then stalled.  The line
 * then also gives read_first=BYTES.
 *
 * With -b, the accepted socket sets SO_RCVBUF to RCVBUF after the
 * handshake; with -B, the listener does, before the connection, and the
 * accepted socket inherits it.  The line then also gives rcvbuf=BYTES, what
 * the kernel made of it (twice RCVBUF), and rx_rmem=BYTES, what the reader
 * held unread when the writes stopped (SO_MEMINFO's sk_rmem_alloc: TCP's
 * receive queue with its overhead, and the bytes the bypass queued).
 *
 * With -w it prints "noread: filled" once it stops writing and waits for EOF
 * on its standard input before it reads back, so that many instances can be
 * held full at once.
 *
 * It exits 0 only if every accepted byte came back intact; a send error
 * other than EAGAIN (ENOMEM, which TCP never gives a sender) is reported as
 * the stop reason and makes it exit 1 after the check.
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <unistd.h>

#include "lib/util.h"

#define BUF_SIZE	(256 * 1024)
#define SEED		0x6e6f7264u	/* "nord" */

/* A field of /proc/meminfo, in KiB. */
static long long meminfo_kib(const char *field)
{
	char line[256];
	long long v = -1;
	size_t len = strlen(field);
	FILE *f = fopen("/proc/meminfo", "r");

	if (!f)
		die("noread: /proc/meminfo");
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, field, len) && line[len] == ':')
			v = strtoll(line + len + 1, NULL, 10);
	fclose(f);
	return v;
}

/* Memory held by all TCP sockets of the host, in KiB ("TCP: ... mem N"). */
static long long tcp_mem_kib(void)
{
	char line[256], *p;
	long long pages = -1;
	FILE *f = fopen("/proc/net/sockstat", "r");

	if (!f)
		die("noread: /proc/net/sockstat");
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, "TCP:", 4) && (p = strstr(line, " mem ")))
			pages = strtoll(p + 5, NULL, 10);
	fclose(f);
	return pages * (sysconf(_SC_PAGESIZE) / 1024);
}

static void set_rcvbuf(int fd, int size)
{
	if (setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size)))
		die("noread: SO_RCVBUF");
}

/* One of the socket's SO_MEMINFO counters (SK_MEMINFO_*), in bytes. */
static long long meminfo(int fd, int which)
{
	uint32_t mem[SK_MEMINFO_VARS] = { 0 };
	socklen_t len = sizeof(mem);

	if (getsockopt(fd, SOL_SOCKET, SO_MEMINFO, mem, &len))
		die("noread: SO_MEMINFO");
	return mem[which];
}

/* lrcvbuf: SO_RCVBUF for the listener, inherited by the accepted socket. */
static void loopback_pair(const char *addr, int port, int lrcvbuf, int *tx, int *rx)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int lfd, one = 1;

	if (!parse_addr(addr, port, &ss, &len)) {
		errno = 0;
		die("noread: bad address %s", addr);
	}
	lfd = socket(ss.ss_family, SOCK_STREAM, 0);
	if (lfd < 0)
		die("noread: socket");
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (lrcvbuf)
		set_rcvbuf(lfd, lrcvbuf);
	if (bind(lfd, (struct sockaddr *)&ss, len) || listen(lfd, 1))
		die("noread: bind/listen port %d", port);
	*tx = socket(ss.ss_family, SOCK_STREAM, 0);
	if (*tx < 0 || connect(*tx, (struct sockaddr *)&ss, len))
		die("noread: connect");
	*rx = accept(lfd, NULL, NULL);
	if (*rx < 0)
		die("noread: accept");
	close(lfd);
}

int main(int argc, char **argv)
{
	static unsigned char buf[BUF_SIZE], exp[BUF_SIZE];
	const char *addr = "127.0.0.1", *stop = "eagain";
	unsigned long long writes = 0, max_writes = ~0ull, cap = ~0ull;
	unsigned long long sent = 0, got = 0, read_first = 0;
	long long slab0, tcp0, slab1, tcp1, rx_rmem;
	int c, port = -1, wsize = 65536, tx, rx, err = 0, rcvbuf = 0, lrcvbuf = 0;
	bool hold = false;

	while ((c = getopt(argc, argv, "a:p:l:n:c:wr:b:B:")) != -1) {
		switch (c) {
		case 'a': addr = optarg; break;
		case 'p': port = atoi(optarg); break;
		case 'l': wsize = atoi(optarg); break;
		case 'n': max_writes = strtoull(optarg, NULL, 0); break;
		case 'c': cap = strtoull(optarg, NULL, 0); break;
		case 'w': hold = true; break;
		case 'r': read_first = strtoull(optarg, NULL, 0); break;
		case 'b': rcvbuf = atoi(optarg); break;
		case 'B': lrcvbuf = atoi(optarg); break;
		default:
			fprintf(stderr, "usage: noread [-a ADDR] -p PORT [-l WRITE_SIZE] [-n WRITES] [-c CAP_BYTES] [-w] [-r READ_FIRST] [-b RCVBUF | -B RCVBUF]\n");
			return 2;
		}
	}
	if (port < 0 || wsize < 1 || wsize > BUF_SIZE) {
		errno = 0;
		die("noread: -p PORT is needed, and -l from 1 to %d", BUF_SIZE);
	}
	loopback_pair(addr, port, lrcvbuf, &tx, &rx);
	if (rcvbuf)
		set_rcvbuf(rx, rcvbuf);
	fcntl(tx, F_SETFL, O_NONBLOCK);

	/* -r: write and read in turns until READ_FIRST bytes were read. */
	while (got < read_first) {
		ssize_t n;

		pattern(SEED, sent, buf, wsize);
		n = send(tx, buf, wsize, MSG_NOSIGNAL);
		if (n > 0) {
			sent += n;
			writes++;
		} else if (n < 0 && errno != EAGAIN) {
			die("noread: send while reading");
		}
		while ((n = recv(rx, buf, sizeof(buf), MSG_DONTWAIT)) > 0) {
			pattern(SEED, got, exp, n);
			if (memcmp(buf, exp, n)) {
				errno = 0;
				die("noread: wrong data at offset %llu", got);
			}
			got += n;
		}
	}
	read_first = got;

	slab0 = meminfo_kib("SUnreclaim");
	tcp0 = tcp_mem_kib();
	for (;;) {
		size_t len = wsize;
		ssize_t n;

		if (writes == max_writes) {
			stop = "writes";
			break;
		}
		if (cap - sent < len)
			len = cap - sent;
		if (!len) {
			stop = "cap";
			break;
		}
		pattern(SEED, sent, buf, len);
		n = send(tx, buf, len, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno != EAGAIN) {
				err = errno;
				stop = strerror(errno);
			}
			break;
		}
		sent += n;
		writes++;
	}
	slab1 = meminfo_kib("SUnreclaim");
	tcp1 = tcp_mem_kib();
	rx_rmem = meminfo(rx, SK_MEMINFO_RMEM_ALLOC);
	if (hold) {
		printf("noread: filled\n");
		fflush(stdout);
		while (read(0, buf, sizeof(buf)) > 0)
			;
	}

	/* Read it all back, and check every byte where it lands. */
	shutdown(tx, SHUT_WR);
	fcntl(tx, F_SETFL, 0);
	for (;;) {
		struct pollfd p = { .fd = rx, .events = POLLIN };
		ssize_t n;

		if (poll(&p, 1, 30000) <= 0) {
			fprintf(stderr, "noread: stalled after %llu of %llu bytes\n", got, sent);
			break;
		}
		n = recv(rx, buf, sizeof(buf), MSG_DONTWAIT);
		if (n < 0 && errno == EAGAIN)
			continue;
		if (n <= 0)
			break;
		pattern(SEED, got, exp, n);
		if (memcmp(buf, exp, n)) {
			fprintf(stderr, "noread: wrong data at offset %llu\n", got);
			break;
		}
		got += n;
	}
	printf("noread: write=%d writes=%llu accepted=%llu stop=%s slab_kib=%+lld tcp_mem_kib=%+lld drained=%llu intact=%d",
	       wsize, writes, sent, err == ENOMEM ? "ENOMEM" : stop,
	       slab1 - slab0, tcp1 - tcp0, got, got == sent);
	if (read_first)
		printf(" read_first=%llu", read_first);
	if (rcvbuf || lrcvbuf)
		printf(" rcvbuf=%lld rx_rmem=%lld", meminfo(rx, SK_MEMINFO_RCVBUF), rx_rmem);
	printf("\n");
	return err || got != sent;
}
