/* SPDX-License-Identifier: GPL-2.0 */
/*
 * bpf_sockops.h - the one definition of what the two BPF programs share.
 *
 * Included by bpf_sockops.c, bpf_redir.c and the tests' probes, so it
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
 * A connection's sends take one of two paths: the bypass (redirected into
 * the peer's psock queue) or TCP.  fallback says which: FALLBACK_NONE for
 * the bypass, else the reason its sends go by TCP now, each counted in
 * struct bypass_stats when it happens (fallback_<reason>) and when the
 * connection comes back (return_<reason>).  Each direction of a connection
 * has its own path: it is the sender's storage that holds it.
 *
 * Going from the bypass to TCP never reorders bytes: tcp_bpf_recvmsg()
 * reads the psock queue, where redirected bytes wait, before it reads the
 * TCP bytes in sk_receive_queue.  Coming back is safe only once the reader
 * has read every byte sent by TCP, and no reader is asleep inside
 * tcp_recvmsg() (which waits for sk_receive_queue only): bpf_redir.c
 * checks both, and what else must hold, before it comes back.
 *
 * in_map is the number of entries the socket has in the sockhash: 1 once it
 * is inserted, 0 once it is counted out (sockets_removed).  More than 1 only
 * for a socket that connect(AF_UNSPEC) disconnected and that connected
 * again: it stays in the map under its first key until it is closed, and is
 * inserted under the new one too.
 */
enum fallback {
	FALLBACK_NONE = 0,
	/*
	 * The peer was not in the map.  On loopback the server is normally
	 * inserted before the client's connect() returns, but if the
	 * listener's lock is held when the final ACK arrives, the server
	 * side is established later, after the client's first bytes already
	 * went by TCP.  The peer may also be outside the cgroup or the host:
	 * then it is looked for NO_PEER_TRIES times, and no more.
	 */
	FALLBACK_NO_PEER,
	FALLBACK_QUEUE,		/* the peer had max_queue unread */
	FALLBACK_TCP_MEM,	/* all TCP sockets held max_tcp_mem */
	FALLBACK_BACKLOG,	/* the host's backlog reached max_tcp_mem */
};

/* How many sends of a connection whose peer was not in the map look again. */
#define NO_PEER_TRIES	16

/* peer_info.flags */
#define PEER_FOR_GOOD	(1 << 0)	/* on TCP until it closes: see bpf_redir.c */
#define PEER_EGRESS	(1 << 1)	/* a message re-aimed at our egress: egress_end */
#define PEER_READERS	(1 << 2)	/* the peer has two readers at once: see bpf_redir.c */
#define PEER_STATE_CB	(1 << 3)	/* its state changes matter: bpf_sockops.c */
#define PEER_CB_OURS	(1 << 4)	/* we turned its state callback on */

/*
 * Redirected messages that found the peer's queue empty, after which the
 * peer's readers are looked at: the first READER_LOOKS, then one in 64.
 */
#define READER_LOOKS	8

struct peer_info {
	struct sock_key key;	/* the peer's key: ours, mirrored */
	/*
	 * The peer's struct sock, as an address, once a message was aimed at
	 * it: bpf_redir reads the peer's state through it before deciding to
	 * come back (bpf_redir.c).  0 until then.
	 */
	__u64 peer_sk;
	__u32 fallback;		/* enum fallback; FALLBACK_NONE: the bypass */
	__u32 flags;		/* PEER_* */
	__u32 charged;		/* our share of the host backlog, see below */
	__u32 in_map;		/* entries this socket has in the sockhash */
	__u32 tries;		/* FALLBACK_NO_PEER: looks for the peer left */
	__u32 egress_end;	/* PEER_EGRESS: our write_seq once it is pushed */
	__u32 idle;		/* messages that found the peer's queue empty */
	__u32 pad;		/* no hole at the end */
	__u64 sent;		/* bytes we redirected to the peer, ever */
	__u64 bound;		/* the queue bound it has earned: queue_bound() */
};

/*
 * The host's backlog: what all redirecting connections together have queued
 * on their peers, unread, counted with MSG_OVERHEAD per message.  The kernel
 * counts the payload in tcp_mem, but not the struct sk_msg that holds each
 * message: without this sum, many connections each under --max-queue could
 * together pin far more than TCP may.  Each sender adds its connection's
 * estimate when it changes, in units of BACKLOG_UNIT bytes (a connection
 * with less queued adds nothing, so request/response traffic never touches
 * the shared counter), and takes it back when it comes back to the bypass
 * after a fallback (its reader has then read everything), when it closes,
 * or when it finds its peer gone.
 *
 * A connection on TCP keeps its share until it comes back or closes:
 * nothing runs when its peer reads, so we cannot see the queue shrink, and
 * a share given back at the fallback would let many connections on TCP pin
 * max_queue each, unseen.  So while its sender is open, the sum can run
 * high, never low: at worst, new sends go by TCP early.  A sender that
 * closes before its peer has read gives its share back early
 * (docs/how-it-works.md, "Memory").
 */
#define BACKLOG_SHIFT	16
#define BACKLOG_UNIT	(1 << BACKLOG_SHIFT)

struct backlog {
	__u64 units;		/* BACKLOG_UNITs, updated with atomic adds */
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
	__u64 msgs_passed;	/* sent by plain TCP: no peer, or fallen back */
	__u64 bytes_passed;	/* bytes in those messages */
	__u64 fallback_no_peer;	/* connections that went to TCP, by reason */
	__u64 fallback_queue;
	__u64 fallback_tcp_mem;
	__u64 fallback_backlog;
	__u64 sockets_skipped_port;	/* left on TCP: a port in skip_ports */
	__u64 sockets_skipped_cgroup;	/* left on TCP: its cgroup in skip_cgroups */
	__u64 return_no_peer;	/* connections back on the bypass, by reason */
	__u64 return_queue;
	__u64 return_tcp_mem;
	__u64 return_backlog;
	/*
	 * Sockets that closed while their sends went by TCP.  The sum of the
	 * fallbacks, less the returns and these, is the number of connection
	 * directions on TCP now (status.sh's on_tcp).  Added atomically, as
	 * the two socket counts above: a lost increment would stay in it.
	 */
	__u64 closed_on_tcp;
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

/*
 * What a redirected message costs the receiving host besides its payload:
 * bpf_tcp_ingress() (net/ipv4/tcp_bpf.c) queues every message in a struct
 * sk_msg of its own, kzalloc()ed: about 700 bytes on x86-64, so one
 * kmalloc-1k object.  Neither the receive buffer nor tcp_mem counts it.
 */
#define MSG_OVERHEAD	1024

/*
 * Skip lists, set by load.sh (--skip-ports, --skip-cgroup): connections the
 * bypass must leave on plain TCP, e.g. a proxy that reads with splice(2),
 * which never sees redirected bytes (docs/semantics.md).
 *
 * skip_ports: a hash from port (host byte order, a __u32) to the number of
 * sockets it kept out.  A socket is skipped when its local or its remote
 * port is in the map, so a server port listed keeps out both ends of every
 * connection to it.  A hash, not a 65536-bit bitmap: the list is short,
 * the lookups run once per connection end (at ESTABLISHED, never per send),
 * and each port gets its own counter, which tells an operator which entry
 * is doing the work.
 *
 * skip_cgroups: a hash from cgroup v2 ID (the cgroup directory's inode
 * number) to the number of sockets it kept out.  A socket is skipped when
 * the cgroup it belongs to, or any ancestor of it, is in the map.
 */
#define MAX_SKIP_PORTS		64
/*
 * bypass_config.skip_lists: which lists have entries.  load.sh sets a bit
 * before it fills its list and clears it after it empties it, so that a
 * connection looks up only lists that may hold something: with none, its
 * setup does no map lookup and no cgroup walk.
 */
#define SKIP_LIST_PORTS		(1 << 0)
#define SKIP_LIST_CGROUPS	(1 << 1)
#define MAX_SKIP_CGROUPS	16
/* Ancestors looked at above a socket's own cgroup; deeper ones are not. */
#define MAX_CGROUP_DEPTH	16

/*
 * The functions a blocking socket wait sleeps in, in the order of
 * bypass_config.waits: a reader inside tcp_recvmsg() (or splice()), a
 * reader inside tcp_bpf_recvmsg() (its wait, or tcp_bpf_recvmsg() itself
 * where the compiler inlined the wait), and a writer waiting for memory.
 * load.sh looks them up by these names.
 */
enum wait_func {
	WAIT_TCP_RECV,		/* sk_wait_data */
	WAIT_BPF_RECV,		/* tcp_msg_wait_data */
	WAIT_BPF_RECVMSG,	/* tcp_bpf_recvmsg */
	WAIT_SEND,		/* sk_stream_wait_memory */
	WAIT_FUNCS,
};

/* Config, set by load.sh through the pinned "config" array. */
struct bypass_config {
	__u32 trace;		/* 1: bpf_printk one line per established socket */
	__u32 page_shift;	/* log2 of the page size, for tcp_mem's pages */
	/*
	 * Per connection: go by TCP once the peer would hold more than its
	 * bound unread, counting MSG_OVERHEAD per queued message, and come
	 * back once it has read everything.  The bound starts at queue_start
	 * (at the end of this struct) and grows up to this as the peer reads
	 * (bpf_redir.c, queue_bound()).  0: no bound.
	 */
	__u64 max_queue;
	/*
	 * Per host, in bytes: go by TCP once TCP's memory (shared by every
	 * TCP socket, tcp_mem) or the host's backlog reaches this, or while
	 * TCP is under memory pressure; come back once both are under three
	 * quarters of it.  0: no guard.
	 */
	__u64 max_tcp_mem;
	/*
	 * Where in the kernel a task waiting on a socket sleeps, for the way
	 * back from TCP (bpf_redir.c, reader_sleeps()): the address of
	 * woken_wake_function, the wake function of every blocking socket
	 * wait, and the text of the functions that wait with it, [start,
	 * end), from /proc/kallsyms (load.sh).  0 where unknown.
	 */
	__u64 woken_wake;
	struct text_range {
		__u64 start, end;
	} waits[WAIT_FUNCS];
	/* Where each connection's queue bound starts; max_queue when fixed. */
	__u64 queue_start;
	__u32 skip_lists;	/* SKIP_LIST_*: the skip lists with entries */
	__u32 pad;		/* no hole at the end */
};

#endif /* __BPF_SOCKOPS_H */
