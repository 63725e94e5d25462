/* SPDX-License-Identifier: GPL-2.0 */
/*
 * bpf_sockops.h - the one definition of what the two BPF programs share.
 *
 * Included by bpf_sockops.c, bpf_redir.c and the user-space tools, so it
 * holds only types and constants (no maps, no helpers).
 */
#ifndef __BPF_SOCKOPS_H
#define __BPF_SOCKOPS_H

#include <linux/types.h>

/*
 * Default capacity of the sockhash: the number of sockets (two per
 * connection) that can be accelerated at once.  When the map is full, new
 * connections are simply not accelerated.  load.sh creates the sockhash
 * itself, "--max-entries N" sockets large, and takes this default, the key
 * size and the value size from the sockhash's definition in bpf_sockops.o's
 * BTF, so the capacity changes without a rebuild.
 */
#define MAX_ENTRIES 65536

/*
 * The sockhash key: one connection seen from one end.
 *
 * A socket is stored under (its netns, its local address:port, its remote
 * address:port, the two initial sequence numbers).  Its peer's key is the
 * mirror: local and remote swapped.  bpf_sockops computes both when the
 * socket becomes established, stores the socket under its own key and keeps
 * the peer's key in the socket's local storage, so that bpf_redir, which runs
 * on every send, only fetches it.
 *
 * - netns: bpf_get_netns_cookie() of the socket's network namespace.  The
 *   four-tuple alone is not unique on a host: every namespace has its own
 *   127.0.0.1 and its own port space, and a program on the root cgroup sees
 *   them all.  Without the cookie, data could cross into another namespace.
 * - local_ip / remote_ip: IPv6 addresses in network byte order, exactly as
 *   the kernel stores them.  IPv4 addresses are stored v4-mapped
 *   (::ffff:a.b.c.d), so an AF_INET client and the AF_INET6 socket accepted
 *   by a dual-stack listener ("iperf3 -s" listens on ::) build the same key.
 * - local_port / remote_port: host byte order.  The context gives local_port
 *   in host order already and remote_port in network order.
 * - local_seq / remote_seq: our and the peer's initial sequence number + 1
 *   (snd_una and rcv_nxt at ESTABLISHED), host byte order.  They tell apart
 *   two connections with the same four-tuple: a socket stays in the map
 *   until its owner closes it, even after both FINs, and a new connection
 *   may reuse the tuple meanwhile.  Without them, the new client would send
 *   into the old, half-dead server socket.
 *
 * The layout has no holes, so no padding byte can make two equal keys differ.
 */
struct sock_key {
	__u64 netns;
	__u32 local_ip[4];
	__u32 remote_ip[4];
	__u32 local_port;
	__u32 remote_port;
	__u32 local_seq;
	__u32 remote_seq;
};

/*
 * What each socket in the sockhash keeps in its local storage.
 *
 * use_tcp latches a connection onto TCP for good once one of its sends went
 * by TCP.  That happens when the peer was not in the map yet: on loopback
 * the server is normally inserted before the client's connect() returns,
 * but if the listener's lock is held when the final ACK arrives, the server
 * side is established later, after the client's first bytes already went by
 * TCP.  Redirecting the next bytes would put them in the peer's psock queue,
 * which tcp_bpf_recvmsg() reads before the TCP bytes still waiting in
 * sk_receive_queue: reordered data.  The other way round is safe (the psock
 * queue is drained first), so the latch only goes one way.
 *
 * in_map is the number of entries the socket has in the sockhash: 1 once it
 * is inserted, 0 once it is counted out (sockets_removed).  More than 1 only
 * for a socket that connect(AF_UNSPEC) disconnected and that connected
 * again: it stays in the map under its first key until it is closed, and is
 * inserted under the new one too.
 */
struct peer_info {
	struct sock_key key;	/* the peer's key: ours, mirrored */
	__u32 use_tcp;		/* a send went by TCP: never redirect again */
	__u32 in_map;		/* entries this socket has in the sockhash */
};

/*
 * Counters, one struct per CPU in a BPF_MAP_TYPE_PERCPU_ARRAY of one entry.
 * Each program does one lookup per run and plain increments: per-CPU slots
 * need no locks.  User space sums over CPUs (status.sh), and shows every
 * field of this struct by its name, so a new counter needs no script change.
 *
 * sockets_inserted - sockets_removed is the number of sockets in the
 * sockhash now: status.sh reads it instead of walking the map.  Those two
 * are added atomically, because a plain increment can be lost: sock_ops runs
 * in process context for one socket and in softirq, on the same CPU, for
 * another.  A lost message counter is noise; a lost one of these two would
 * stay in the count for good.
 */
struct bypass_stats {
	__u64 sockets_inserted;	/* established sockets put in the sockhash */
	__u64 sockets_removed;	/* sockets that left it: see bpf_sockops.c */
	__u64 insert_failed;	/* bpf_sock_hash_update() failed, e.g. map full */
	__u64 insert_map_full;	/* of those, because the sockhash was full */
	__u64 sockets_skipped;	/* left on TCP on purpose (SO_RCVLOWAT set) */
	__u64 msgs_redirected;	/* sendmsg calls redirected to a peer socket */
	__u64 bytes_redirected;	/* bytes in those messages */
	__u64 msgs_passed;	/* no peer in the map: sent by plain TCP */
	__u64 bytes_passed;	/* bytes in those messages */
};

/*
 * Read one context field with one load of its own.
 *
 * Context accesses are rewritten by the verifier into loads from the kernel's
 * real structures, so each must be a plain load at a constant offset from the
 * context pointer.  clang 14 likes to merge loads of the same shape from two
 * branches (say local_ip4 and local_ip6[3]) into one load through a computed
 * pointer, which the verifier rejects: "dereference of modified ctx ptr".
 * A volatile load may not be dropped, duplicated or moved across the other
 * volatile loads, and together with the store that follows each read it keeps
 * every load where it is written.  It is not a guarantee: clang can still
 * sink two identical volatile loads whose values are used the same way.  If
 * the verifier reports that error after a change, make the two branches'
 * uses of their loads differ again.
 */
#define CTX_READ(field) (*(volatile __typeof__(field) *)&(field))

/* Index of the only entry of the stats and config arrays. */
#define STATS_KEY	0
#define CONFIG_KEY	0

/* Config, set by load.sh through the pinned "config" array. */
struct bypass_config {
	__u32 trace;		/* 1: bpf_printk one line per established socket */
};

#endif /* __BPF_SOCKOPS_H */
