// SPDX-License-Identifier: GPL-2.0
/*
 * repair - a TCP socket made ESTABLISHED by TCP_REPAIR, as CRIU restores
 * one, with the four-tuple and sequence numbers of our choice: no SYN is
 * sent (tcp_connect() calls tcp_finish_connect(sk, NULL)).
 *
 *   repair -b LOCAL_ADDR -l LOCAL_PORT -a ADDR -p PORT [-s SND_SEQ] [-r RCV_SEQ]
 *
 * Needs CAP_NET_ADMIN in the socket's network namespace (root, or any user
 * in a user namespace of its own).  Prints "established" once connect()
 * returned and the socket is out of repair mode, then holds it open until
 * it is killed, so that the test can look at the sockhash meanwhile.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <linux/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include "lib/util.h"

static void setopt(int fd, int opt, int val, const char *what)
{
	if (setsockopt(fd, IPPROTO_TCP, opt, &val, sizeof(val)))
		die("repair: setsockopt %s", what);
}

int main(int argc, char **argv)
{
	const char *local = NULL, *remote = NULL;
	int lport = 0, rport = 0, c, fd, state;
	unsigned int snd_seq = 1000000, rcv_seq = 2000000;
	struct sockaddr_storage la, ra;
	socklen_t llen, rlen, slen;
	struct tcp_info ti;

	while ((c = getopt(argc, argv, "b:l:a:p:s:r:")) != -1) {
		switch (c) {
		case 'b': local = optarg; break;
		case 'l': lport = atoi(optarg); break;
		case 'a': remote = optarg; break;
		case 'p': rport = atoi(optarg); break;
		case 's': snd_seq = strtoul(optarg, NULL, 0); break;
		case 'r': rcv_seq = strtoul(optarg, NULL, 0); break;
		default: die("usage: repair -b ADDR -l PORT -a ADDR -p PORT [-s SEQ] [-r SEQ]");
		}
	}
	if (!local || !remote || !lport || !rport)
		die("usage: repair -b ADDR -l PORT -a ADDR -p PORT [-s SEQ] [-r SEQ]");
	if (!parse_addr(local, lport, &la, &llen) ||
	    !parse_addr(remote, rport, &ra, &rlen))
		die("repair: not an address: %s or %s", local, remote);
	fd = socket(la.ss_family, SOCK_STREAM, 0);
	if (fd < 0)
		die("repair: socket");
	/*
	 * Repair mode first, then each queue's sequence number: that of the
	 * send queue is our next byte (write_seq), that of the receive queue
	 * the next byte we expect (rcv_nxt).
	 */
	setopt(fd, TCP_REPAIR, TCP_REPAIR_ON, "TCP_REPAIR");
	setopt(fd, TCP_REPAIR_QUEUE, TCP_SEND_QUEUE, "TCP_REPAIR_QUEUE");
	setopt(fd, TCP_QUEUE_SEQ, snd_seq, "TCP_QUEUE_SEQ (send)");
	setopt(fd, TCP_REPAIR_QUEUE, TCP_RECV_QUEUE, "TCP_REPAIR_QUEUE");
	setopt(fd, TCP_QUEUE_SEQ, rcv_seq, "TCP_QUEUE_SEQ (recv)");
	if (bind(fd, (struct sockaddr *)&la, llen))
		die("repair: bind %s:%d", local, lport);
	if (connect(fd, (struct sockaddr *)&ra, rlen))
		die("repair: connect %s:%d", remote, rport);
	/* TCP_REPAIR_OFF_NO_WP: out of repair mode without a window probe. */
	setopt(fd, TCP_REPAIR, TCP_REPAIR_OFF_NO_WP, "TCP_REPAIR off");
	slen = sizeof(ti);
	if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &slen))
		die("repair: TCP_INFO");
	state = ti.tcpi_state;
	if (state != 1 /* TCP_ESTABLISHED */)
		die("repair: state %d after connect, not ESTABLISHED", state);
	printf("established\n");
	fflush(stdout);
	for (;;)
		pause();
}
