// SPDX-License-Identifier: GPL-2.0
/*
 * sockprobe_close.c - closing: close() with unread data, SO_LINGER {1, 0},
 * writing to a closed peer or after our own shutdown(SHUT_WR), close()
 * with data in flight, shutdown(SHUT_RD),
 * a peer process that exits, and sends the moment connect() returns.
 */
#include <poll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sockprobe.h"

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

/*
 * Writing after our own shutdown(SHUT_WR): EPIPE, and the peer reads EOF
 * and nothing after it.  (tcp_bpf_sendmsg() does not look at the shutdown
 * before it runs the sk_msg program: bpf_redir must.)
 */
static void probe_send_after_shutdown(void)
{
	struct pair p;
	char buf[16];

	pair_open(&p);
	shutdown(p.cli, SHUT_WR);
	add("send=%s", R(send(p.cli, "late", 4, MSG_NOSIGNAL)));
	add("recv=%s", R(recv(p.srv, buf, sizeof(buf), 0)));
	add("again=%s", R(send(p.cli, "late", 4, MSG_NOSIGNAL)));
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

const struct probe close_probes[] = {
	PROBE(rst_unread),
	PROBE(linger0),
	PROBE(write_after_close),
	PROBE(send_after_shutdown),
	PROBE(close_inflight),
	PROBE(shutdown_rd),
	PROBE(peer_exit),
	PROBE(peer_exit_unread),
	PROBE(send_after_connect),
	{}
};
