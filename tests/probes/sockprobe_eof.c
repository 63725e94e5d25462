// SPDX-License-Identifier: GPL-2.0
/*
 * sockprobe_eof.c - end of stream: what a reader sees when its peer closes
 * or half-closes, and a reader blocked in recv() woken by the FIN, by
 * shutdown() on its own socket, or by a signal.
 */
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sockprobe.h"

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

const struct probe eof_probes[] = {
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
	{}
};
