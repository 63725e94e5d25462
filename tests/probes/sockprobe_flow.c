// SPDX-License-Identifier: GPL-2.0
/*
 * sockprobe_flow.c - a connection whose reader falls behind: with the bypass
 * loaded with a small --max-queue (tests/semantics.bats uses 1 MiB), the
 * FILL bytes sent while the reader waits go partly to the reader's psock
 * queue, then by TCP, and the connection comes back to the bypass once the
 * reader has read everything.  Each probe then does one thing that TCP
 * answers in its own way, and must get TCP's answer: shutdown() and close()
 * on either side, urgent data, a reader asleep in tcp_recvmsg() for the rest
 * of a MSG_WAITALL count, and the way back itself.
 *
 * -P reports the path of the bytes the probe sends last ("after" the
 * fallback), or of the whole transfer when nothing comes after it.
 */
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sockprobe.h"

#define FILL	(4 * MiB)

/*
 * Start a thread that sends FILL bytes, then does `after`, and let it run
 * while nobody reads: past the bound the connection falls back, and TCP's
 * buffers then hold the sender, or take the rest.
 */
static void fill(struct pair *p, struct sender *s, uint32_t seed, enum after after)
{
	*s = (struct sender){ .fd = p->cli, .st = { .seed = seed }, .len = FILL,
			      .chunk = 64 * KiB, .after = after };
	sender_start(s);
	sender_wait(s);
}

/* Read exactly len bytes of the stream, or until EOF or an error. */
static uint64_t read_n(int fd, struct stream *st, uint64_t len)
{
	uint64_t got = 0;

	while (got < len) {
		ssize_t r = recv_pat(fd, st, len - got, 0);

		if (r <= 0)
			break;
		got += r;
	}
	return got;
}

/* The writer half-closes on TCP: the reader gets every byte, then EOF; a
 * send after the shutdown fails with EPIPE. */
static void probe_fallback_shutdown(void)
{
	struct pair p;
	struct sender s;
	struct stream rx = { .seed = 40 };
	const char *last;
	uint64_t before;

	pair_open(&p);
	before = bytes_received(p.srv);
	fill(&p, &s, 40, AFTER_SHUT);
	add("bytes=%llu", (unsigned long long)drain(p.srv, &rx, NULL, &last));
	add("end=%s", last);
	sender_join(&s);
	add("send=%s", R(send(p.cli, "x", 1, MSG_NOSIGNAL)));
	add_data();
	probe_path = path_of(bytes_received(p.srv) - before, FILL);
	pair_close(&p);
}

/* The writer closes on TCP: the reader gets every byte, then EOF. */
static void probe_fallback_close(void)
{
	struct pair p;
	struct sender s;
	struct stream rx = { .seed = 41 };
	const char *last;
	uint64_t before;

	pair_open(&p);
	before = bytes_received(p.srv);
	fill(&p, &s, 41, AFTER_CLOSE);
	add("bytes=%llu", (unsigned long long)drain(p.srv, &rx, odd_pieces, &last));
	add("end=%s", last);
	sender_join(&s);
	p.cli = -1;
	add_data();
	probe_path = path_of(bytes_received(p.srv) - before, FILL);
	pair_close(&p);
}

/*
 * The reader half-closes while its writer is on TCP: the writer reads EOF,
 * goes on writing, and the connection stays on TCP (either side's
 * shutdown() ends the way back).
 */
static void probe_fallback_peer_shutdown(void)
{
	struct pair p;
	struct sender s;
	struct stream rx = { .seed = 42 }, tx;
	uint64_t before;

	pair_open(&p);
	fill(&p, &s, 42, AFTER_NONE);
	shutdown(p.srv, SHUT_WR);
	add("eof=%s", R(recv(p.cli, &(char){ 0 }, 1, 0)));
	add("bytes=%llu", (unsigned long long)read_n(p.srv, &rx, FILL));
	sender_join(&s);
	wait_acked(p.cli);
	before = bytes_received(p.srv);
	tx = s.st;
	send_pat(p.cli, &tx, 1000, 0);
	add("more=%llu", (unsigned long long)read_n(p.srv, &rx, 1000));
	probe_path = path_of(bytes_received(p.srv) - before, 1000);
	close(p.cli);
	p.cli = -1;
	add("end=%s", R(recv(p.srv, &(char){ 0 }, 1, 0)));
	add_data();
	pair_close(&p);
}

/*
 * Urgent data sent while the connection is on TCP is urgent data, and while
 * it is pending the connection stays on TCP: the 1000 bytes sent then come
 * by TCP, behind it.
 */
static void probe_fallback_oob(void)
{
	struct pair p;
	struct sender s;
	struct stream rx = { .seed = 43 }, tx;
	uint64_t before;
	char c = 0;
	int mark = -1;

	pair_open(&p);
	fill(&p, &s, 43, AFTER_OOB);
	add("bytes=%llu", (unsigned long long)read_n(p.srv, &rx, FILL));
	sender_join(&s);
	add("poll=%s", events_fmt(wait_events(p.srv, POLLPRI) & POLLPRI));
	ioctl(p.srv, SIOCATMARK, &mark);
	add("atmark=%d", mark);
	wait_acked(p.cli);
	before = bytes_received(p.srv);
	tx = s.st;
	send_pat(p.cli, &tx, 1000, 0);
	add("oob=%s", R(recv(p.srv, &c, 1, MSG_OOB)));
	add("got=%c", c ? c : '-');
	add("more=%llu", (unsigned long long)read_n(p.srv, &rx, 1000));
	add_data();
	probe_path = path_of(bytes_received(p.srv) - before, 1000);
	pair_close(&p);
}

/* A reader that blocks in recv(MSG_WAITALL) until its count is complete. */
struct waitall {
	pthread_t th;
	int fd, tid;
	bool done;
	uint64_t want, got;
	struct stream st;
	const char *last;
};

static void *waitall_main(void *arg)
{
	struct waitall *w = arg;
	unsigned char *buf = malloc(w->want);
	ssize_t r;

	if (!buf)
		die("malloc");
	__atomic_store_n(&w->tid, gettid(), __ATOMIC_RELEASE);
	do {
		r = recv(w->fd, buf, w->want - w->got, MSG_WAITALL);
		if (r > 0) {
			check(&w->st, buf, r);
			w->got += r;
		}
	} while (r > 0 && w->got < w->want);
	w->last = w->got == w->want ? "all" : ret_fmt(r, errno);
	free(buf);
	__atomic_store_n(&w->done, true, __ATOMIC_RELEASE);
	return NULL;
}

/*
 * The reader asks for FILL + 1000 bytes with MSG_WAITALL (with the bypass,
 * its first recv() returns what waits in the psock queue, and it asks
 * again for the rest) and, once it has read the FILL bytes (the last of
 * them by TCP, in tcp_recvmsg()), sleeps there for the other 1000.  The connection is drained then, but those
 * 1000 bytes must go by TCP: tcp_recvmsg() waits for sk_receive_queue
 * only, and would sleep on (SO_RCVTIMEO ends it: last=-1(EAGAIN)).
 */
static void probe_fallback_waitall(void)
{
	struct pair p;
	struct sender s;
	struct waitall w = { .st = { .seed = 44 }, .want = FILL + 1000 };
	struct stream tx;
	uint64_t before;

	pair_open(&p);
	fill(&p, &s, 44, AFTER_NONE);
	w.fd = p.srv;
	if (pthread_create(&w.th, NULL, waitall_main, &w))
		die("pthread_create");
	sender_join(&s);
	wait_acked(p.cli);
	/* Until the reader has taken every byte and sleeps for the rest. */
	for (int i = 0; i < WAIT_MS; i++) {
		int tid = __atomic_load_n(&w.tid, __ATOMIC_ACQUIRE);

		if (tid && thread_state(tid) == 'S' && inq(p.srv) == 0)
			break;
		usleep(1000);
	}
	before = bytes_received(p.srv);
	tx = s.st;
	send_pat(p.cli, &tx, 1000, 0);
	for (int i = 0; i < WAIT_MS && !__atomic_load_n(&w.done, __ATOMIC_ACQUIRE); i++)
		usleep(1000);
	if (!__atomic_load_n(&w.done, __ATOMIC_ACQUIRE)) {
		add("end=stuck");
		shutdown(p.srv, SHUT_RD);
	}
	pthread_join(w.th, NULL);
	add("got=%llu", (unsigned long long)w.got);
	add("end=%s", w.last);
	add_data();
	probe_path = path_of(bytes_received(p.srv) - before, 1000);
	pair_close(&p);
}

/*
 * The way back: once the reader has read every byte and every byte is
 * acknowledged, the next bytes go by the bypass again, behind the others.
 */
static void probe_fallback_return(void)
{
	struct pair p;
	struct sender s;
	struct stream rx = { .seed = 45 }, tx;
	uint64_t before;

	pair_open(&p);
	fill(&p, &s, 45, AFTER_NONE);
	add("bytes=%llu", (unsigned long long)read_n(p.srv, &rx, FILL));
	sender_join(&s);
	wait_acked(p.cli);
	before = bytes_received(p.srv);
	tx = s.st;
	send_pat(p.cli, &tx, 1000, 0);
	add("more=%llu", (unsigned long long)read_n(p.srv, &rx, 1000));
	add_data();
	probe_path = path_of(bytes_received(p.srv) - before, 1000);
	pair_close(&p);
}

/* Meaningful with a small --max-queue only: run by name. */
#define FLOW_PROBE(n) { #n, probe_##n, true }

const struct probe flow_probes[] = {
	FLOW_PROBE(fallback_shutdown),
	FLOW_PROBE(fallback_close),
	FLOW_PROBE(fallback_peer_shutdown),
	FLOW_PROBE(fallback_oob),
	FLOW_PROBE(fallback_waitall),
	FLOW_PROBE(fallback_return),
	{}
};
