// SPDX-License-Identifier: GPL-2.0
/*
 * connhold - many TCP connections at once: hold them, churn them, or time a
 * ping-pong while they sit idle.  The scale section of the benchmark
 * (bench/scale.sh) and the map-count tests (tests/capacity.bats) use it.
 *
 * connhold hold -n N [-a ADDR] [-w W]
 *	Open N connections to listeners of our own (port 0: the kernel picks
 *	one), both ends in this process tree, spread over worker processes so
 *	that none holds more than 2 W + a few file descriptors (W = 9000 by
 *	default: this host allows 20,000 per process).  Print one JSON line
 *	when all are open: {"conns", "procs", "secs", "rate"}.  Then read
 *	commands on stdin, one a line, which every worker applies to its own
 *	connections, and answer each with one JSON line {"cmd", "n", ...}:
 *	  close K	close both ends of K connections, the client's first
 *	  reset K	close the client end of K connections with SO_LINGER 0,
 *			so the server end is reset but stays open
 *	  shutdown K	shutdown(SHUT_WR) both ends of K connections: both FINs
 *			are exchanged, both ends stay open
 *	  backlog K	open K more connections that are never accept()ed
 *	  unlisten	close the listener, and with it the backlog
 *	  pingpong S B	(first worker only) one more connection, to a
 *			listener of its own: a B-byte ping-pong for S seconds,
 *			the echo in another process; answers round_trips,
 *			p50_us and p99_us
 *	EOF on stdin closes everything and exits.
 *
 * connhold churn -n N [-a ADDR] [-P PAR] [-s B]
 *	N short connections, PAR processes at a time, each its own listener:
 *	connect, accept, B bytes each way (checked), close both ends.  Prints
 *	{"conns", "procs", "secs", "rate"}.
 *
 * Every failure is fatal: the exit status is 1 and stderr says why.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "lib/util.h"

#define MAX_SIZE	65536
#define MAX_SAMPLES	(1 << 20)

static const char *addr = "127.0.0.1";

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* As many file descriptors as the hard limit allows. */
static void raise_nofile(void)
{
	struct rlimit rl;

	if (!getrlimit(RLIMIT_NOFILE, &rl) && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

/* A listener on ADDR, port 0; its address goes to *sa. */
static int listen_any(struct sockaddr_in *sa)
{
	socklen_t len = sizeof(*sa);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	memset(sa, 0, sizeof(*sa));
	sa->sin_family = AF_INET;
	if (inet_pton(AF_INET, addr, &sa->sin_addr) != 1)
		die("bad address %s", addr);
	if (fd < 0 || bind(fd, (struct sockaddr *)sa, sizeof(*sa)) ||
	    listen(fd, SOMAXCONN) ||
	    getsockname(fd, (struct sockaddr *)sa, &len))
		die("listen on %s", addr);
	return fd;
}

static int connect_to(const struct sockaddr_in *sa)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	if (fd < 0 || connect(fd, (const struct sockaddr *)sa, sizeof(*sa)))
		die("connect");
	return fd;
}

static void write_all(int fd, const char *buf, size_t len)
{
	ssize_t n;

	for (; len; buf += n, len -= n) {
		n = write(fd, buf, len);
		if (n <= 0)
			die("write");
	}
}

static void read_all(int fd, char *buf, size_t len)
{
	ssize_t n;

	for (; len; buf += n, len -= n) {
		n = read(fd, buf, len);
		if (n <= 0) {
			if (!n)
				errno = 0;
			die("read: %s", n ? "error" : "early EOF");
		}
	}
}

/* The payload: byte i of a message is (i + SEQ) & 0xff, so each differs. */
static void fill(char *buf, size_t len, unsigned int seq)
{
	size_t i;

	for (i = 0; i < len; i++)
		buf[i] = (char)(i + seq);
}

static void check(const char *buf, size_t len, unsigned int seq)
{
	size_t i;

	for (i = 0; i < len; i++)
		if (buf[i] != (char)(i + seq)) {
			errno = 0;
			die("byte %zu of message %u differs", i, seq);
		}
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/*
 * One connection of SIZE-byte round trips for SECS seconds, on a listener
 * of its own (the held one may have a backlog); the echo runs in a child
 * process, as a server would.  Prints the reply line.
 */
static void pingpong(double secs, size_t size, FILE *out)
{
	static double rtt[MAX_SAMPLES];
	char buf[MAX_SIZE], msg[MAX_SIZE];
	long trips = 0, kept;
	int one = 1, lfd, cfd, sfd, status;
	struct sockaddr_in sa;
	double t0, t, end;
	pid_t pid;

	if (!size || size > MAX_SIZE) {
		errno = 0;
		die("pingpong size must be 1..%d", MAX_SIZE);
	}
	lfd = listen_any(&sa);
	cfd = connect_to(&sa);
	sfd = accept(lfd, NULL, NULL);
	if (sfd < 0)
		die("accept");
	close(lfd);
	setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	setsockopt(sfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	pid = fork();
	if (pid < 0)
		die("fork");
	if (!pid) {
		ssize_t n;

		close(cfd);
		while ((n = read(sfd, buf, size)) > 0)
			write_all(sfd, buf, n);
		_exit(n < 0);
	}
	close(sfd);
	t0 = now();
	end = t0 + secs;
	do {
		fill(msg, size, trips);
		t = now();
		write_all(cfd, msg, size);
		read_all(cfd, buf, size);
		rtt[trips % MAX_SAMPLES] = now() - t;
		check(buf, size, trips);
		trips++;
	} while (now() < end);
	close(cfd);
	if (waitpid(pid, &status, 0) < 0 || status)
		die("the echo process failed");
	kept = trips < MAX_SAMPLES ? trips : MAX_SAMPLES;
	qsort(rtt, kept, sizeof(rtt[0]), cmp_double);
	fprintf(out, "{\"cmd\":\"pingpong\",\"n\":1,\"size\":%zu,\"round_trips\":%ld,"
		"\"p50_us\":%.2f,\"p99_us\":%.2f}\n", size, trips,
		rtt[kept / 2] * 1e6, rtt[kept * 99 / 100] * 1e6);
	fflush(out);
}

/* A worker's connections: cli[i] and srv[i] are -1 once closed. */
struct conns {
	int *cli, *srv;
	char *shut;
	int n;
	int *backlog;
	int nbacklog;
	int lfd;
	struct sockaddr_in sa;
};

static int close_fd(int *fd)
{
	if (*fd < 0)
		return 0;
	close(*fd);
	*fd = -1;
	return 1;
}

/* Apply one command line to our connections; the reply goes to OUT. */
static void worker_cmd(struct conns *c, char *line, int first, FILE *out)
{
	char cmd[32];
	double secs;
	long k = 0, n = 0;
	size_t size;
	int i;

	if (sscanf(line, "%31s %lf %zu", cmd, &secs, &size) < 1)
		cmd[0] = 0;
	k = (long)secs;
	if (!strcmp(cmd, "close")) {
		for (i = 0; i < c->n && n < k; i++) {
			if (c->cli[i] < 0 && c->srv[i] < 0)
				continue;
			close_fd(&c->cli[i]);
			close_fd(&c->srv[i]);
			n++;
		}
	} else if (!strcmp(cmd, "reset")) {
		struct linger lg = { .l_onoff = 1, .l_linger = 0 };

		for (i = 0; i < c->n && n < k; i++) {
			if (c->cli[i] < 0 || c->srv[i] < 0 || c->shut[i])
				continue;
			if (setsockopt(c->cli[i], SOL_SOCKET, SO_LINGER, &lg,
				       sizeof(lg)))
				die("SO_LINGER");
			close_fd(&c->cli[i]);
			n++;
		}
	} else if (!strcmp(cmd, "shutdown")) {
		for (i = 0; i < c->n && n < k; i++) {
			if (c->cli[i] < 0 || c->srv[i] < 0 || c->shut[i])
				continue;
			if (shutdown(c->cli[i], SHUT_WR) ||
			    shutdown(c->srv[i], SHUT_WR))
				die("shutdown");
			c->shut[i] = 1;
			n++;
		}
	} else if (!strcmp(cmd, "backlog")) {
		int *b = realloc(c->backlog, (c->nbacklog + k) * sizeof(int));

		if (!b || c->lfd < 0)
			die("backlog");
		c->backlog = b;
		for (; n < k; n++)
			b[c->nbacklog++] = connect_to(&c->sa);
	} else if (!strcmp(cmd, "unlisten")) {
		n = close_fd(&c->lfd);
	} else if (!strcmp(cmd, "pingpong")) {
		if (first) {
			pingpong(secs, size, out);
			return;
		}
	} else {
		errno = 0;
		die("unknown command: %s", line);
	}
	fprintf(out, "{\"cmd\":\"%s\",\"n\":%ld}\n", cmd, n);
	fflush(out);
}

/* Open N connections, report, then serve commands until EOF. */
static void hold_worker(int n, int first, FILE *in, FILE *out)
{
	struct conns c = { .n = n, .lfd = -1 };
	char line[256];
	double t0 = now();
	int i;

	c.cli = malloc(n * sizeof(int));
	c.srv = malloc(n * sizeof(int));
	c.shut = calloc(n ? n : 1, 1);
	if ((n && (!c.cli || !c.srv)) || !c.shut)
		die("malloc");
	c.lfd = listen_any(&c.sa);
	for (i = 0; i < n; i++) {
		c.cli[i] = connect_to(&c.sa);
		c.srv[i] = accept(c.lfd, NULL, NULL);
		if (c.srv[i] < 0)
			die("accept (connection %d)", i);
	}
	fprintf(out, "ready %.6f\n", now() - t0);
	fflush(out);
	while (fgets(line, sizeof(line), in))
		worker_cmd(&c, line, first, out);
	/* EOF: the process exit closes every socket. */
	exit(0);
}

/* N short connections, one after the other, SIZE bytes each way. */
static void churn_worker(int n, size_t size, FILE *out)
{
	char msg[MAX_SIZE], buf[MAX_SIZE];
	struct sockaddr_in sa;
	double t0 = now();
	int i, lfd, cfd, sfd;

	lfd = listen_any(&sa);
	for (i = 0; i < n; i++) {
		cfd = connect_to(&sa);
		sfd = accept(lfd, NULL, NULL);
		if (sfd < 0)
			die("accept");
		fill(msg, size, i);
		write_all(cfd, msg, size);
		read_all(sfd, buf, size);
		check(buf, size, i);
		write_all(sfd, buf, size);
		read_all(cfd, buf, size);
		check(buf, size, i);
		close(cfd);
		close(sfd);
	}
	fprintf(out, "ready %.6f\n", now() - t0);
	fflush(out);
	exit(0);
}

struct worker {
	pid_t pid;
	FILE *cmd, *reply;
};

/*
 * Fork NW workers; worker i gets share(i) connections.  HOLD: hold_worker,
 * else churn_worker.  Returns when every worker reported "ready".
 */
static struct worker *start(int nw, int total, int hold, size_t size)
{
	struct worker *w = calloc(nw, sizeof(*w));
	int i, j, to[2], from[2], share;
	char line[64];

	if (!w)
		die("calloc");
	for (i = 0; i < nw; i++) {
		share = total / nw + (i < total % nw);
		if (pipe(to) || pipe(from))
			die("pipe");
		w[i].pid = fork();
		if (w[i].pid < 0)
			die("fork");
		if (!w[i].pid) {
			FILE *in = fdopen(to[0], "r"), *out = fdopen(from[1], "w");

			/* Die with the parent, and never keep its pipes. */
			prctl(PR_SET_PDEATHSIG, SIGKILL);
			for (j = 0; j < i; j++) {
				fclose(w[j].cmd);
				fclose(w[j].reply);
			}
			close(to[1]);
			close(from[0]);
			if (hold)
				hold_worker(share, i == 0, in, out);
			churn_worker(share, size, out);
		}
		close(to[0]);
		close(from[1]);
		w[i].cmd = fdopen(to[1], "w");
		w[i].reply = fdopen(from[0], "r");
	}
	for (i = 0; i < nw; i++)
		if (!fgets(line, sizeof(line), w[i].reply) ||
		    strncmp(line, "ready ", 6)) {
			errno = 0;
			die("worker %d failed", i);
		}
	return w;
}

static void usage(void)
{
	fprintf(stderr,
		"Usage: connhold hold -n N [-a ADDR] [-w PER_WORKER]\n"
		"       connhold churn -n N [-a ADDR] [-P PARALLEL] [-s SIZE]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	int hold, n = 0, per = 9000, par = 1, nw, i, opt;
	size_t size = 64;
	struct worker *w;
	char line[256];
	double t0, secs;

	if (argc < 2)
		usage();
	hold = !strcmp(argv[1], "hold");
	if (!hold && strcmp(argv[1], "churn"))
		usage();
	optind = 2;
	while ((opt = getopt(argc, argv, "n:a:w:P:s:")) != -1) {
		switch (opt) {
		case 'n': n = atoi(optarg); break;
		case 'a': addr = optarg; break;
		case 'w': per = atoi(optarg); break;
		case 'P': par = atoi(optarg); break;
		case 's': size = strtoul(optarg, NULL, 0); break;
		default: usage();
		}
	}
	if (n < 0 || per < 1 || par < 1 || !size || size > MAX_SIZE)
		usage();
	raise_nofile();
	signal(SIGPIPE, SIG_IGN);
	nw = hold ? (n + per - 1) / per : par;
	if (nw < 1)
		nw = 1;

	t0 = now();
	w = start(nw, n, hold, size);
	secs = now() - t0;
	printf("{\"conns\":%d,\"procs\":%d,\"secs\":%.3f,\"rate\":%.0f}\n",
	       n, nw, secs, n / secs);
	fflush(stdout);

	/* Forward each command to every worker; sum their answers. */
	while (hold && fgets(line, sizeof(line), stdin)) {
		long total = 0, k;
		char reply[512], first[512] = "";

		for (i = 0; i < nw; i++) {
			fputs(line, w[i].cmd);
			fflush(w[i].cmd);
		}
		for (i = 0; i < nw; i++) {
			char *p;

			if (!fgets(reply, sizeof(reply), w[i].reply)) {
				errno = 0;
				die("worker %d failed on: %s", i, line);
			}
			if (!i)
				strcpy(first, reply);
			p = strstr(reply, "\"n\":");
			k = p ? atol(p + 4) : 0;
			total += k;
		}
		if (!strncmp(line, "pingpong", 8)) {
			fputs(first, stdout);
		} else {
			line[strcspn(line, " \n")] = 0;
			printf("{\"cmd\":\"%s\",\"n\":%ld}\n", line, total);
		}
		fflush(stdout);
	}
	/* EOF (or a churn run done): the workers exit when their pipe closes. */
	for (i = 0; i < nw; i++)
		fclose(w[i].cmd);
	for (i = 0; i < nw; i++) {
		int status;

		if (waitpid(w[i].pid, &status, 0) < 0 || status) {
			errno = 0;
			die("worker %d exited with status %d", i, status);
		}
	}
	return 0;
}
