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
#include <linux/net_tstamp.h>	/* SOF_TIMESTAMPING_* */

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
 * A socket is stored under (its scope, its local address:port, its remote
 * address:port, the two initial sequence numbers).  Its peer's key is the
 * mirror: local and remote swapped.  bpf_sockops computes both when the
 * socket becomes established, stores the socket under its own key and keeps
 * the peer's key in the socket's local storage, so that bpf_redir, which runs
 * on every send, only fetches it.
 *
 * - scope: where the addresses mean something (sock_key.h builds it).  By
 *   default bpf_get_netns_cookie() of the socket's network namespace: the
 *   four-tuple alone is not unique on a host, every namespace has its own
 *   127.0.0.1 and its own port space, and a program on the root cgroup sees
 *   them all.  Without the cookie, data could cross into another namespace.
 *   With load.sh --cross-netns, a connection whose addresses are not
 *   loopback gets SCOPE_HOST instead, so that its two ends, in two
 *   namespaces (two containers on a bridge), build mirrored keys.  Two
 *   namespaces may then hold the same four-tuple (two bridges with one
 *   subnet): the initial sequence numbers below tell them apart, and a key
 *   that is taken anyway is never replaced (bpf_sockops.c, "collisions").
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
	__u64 scope;
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
	FALLBACK_QUEUE,		/* the peer had its bound (or SO_RCVBUF) unread */
	FALLBACK_TCP_MEM,	/* all TCP sockets held max_tcp_mem */
	FALLBACK_BACKLOG,	/* the host's backlog reached max_tcp_mem */
	/*
	 * The peer set an option the bypass cannot honour after the
	 * connection was established (bpf_sockopt.c): for good.
	 */
	FALLBACK_OPTION,
};

/* How many sends of a connection whose peer was not in the map look again. */
#define NO_PEER_TRIES	16

/* peer_info.flags */
#define PEER_FOR_GOOD	(1 << 0)	/* on TCP until it closes: see bpf_redir.c */
#define PEER_EGRESS	(1 << 1)	/* a message re-aimed at our egress: egress_end */
#define PEER_READERS	(1 << 2)	/* the peer has two readers at once: see bpf_redir.c */
#define PEER_CHECKED	(1 << 3)	/* our peer's key is in no collision */
#define PEER_OPTION	(1 << 4)	/* we are in opt_socks: see bpf_sockopt.c */
#define PEER_STATE_CB	(1 << 5)	/* its state changes matter: bpf_sockops.c */
#define PEER_CB_OURS	(1 << 6)	/* we turned its state callback on */

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
	__u64 sockets_skipped;	/* left on TCP on purpose: an option set (SO_RCVLOWAT...) */
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
	/*
	 * Established sockets whose key another socket held (bpf_sockops.c):
	 * both stay on TCP.  Expected never: it takes the same four-tuple
	 * and both initial sequence numbers in two namespaces.
	 */
	__u64 collisions;
	/* Sockets made ESTABLISHED by TCP_REPAIR, never inserted. */
	__u64 repair_refused;
	__u64 fallback_option;	/* the peer set an option (bpf_sockopt.c) */
	__u64 options_set;	/* sockets that set one: added to opt_socks */
	__u64 options_untracked;	/* of those, not added: opt_socks was full */
};

/*
 * Options set after the handshake (bpf_sockopt.c).
 *
 * An option about receiving, set on socket R, concerns the bytes its peer
 * P sends: it is P's bpf_redir that must send by TCP from then on.  The
 * setsockopt hook runs on R and cannot reach P's storage, so R puts its own
 * key in opt_socks, where P's bpf_redir, which holds R's key already (its
 * peer_info.key), looks it up.  The value says which options R set
 * (OPT_*).  R takes its key out when it closes (bpf_release).
 *
 * opt_gate counts R's in opt_socks, host-wide: while it is 0, bpf_redir
 * does no hash lookup, one array load only.  Added atomically, as the
 * socket counts: a lost increment would keep the gate open for good, a lost
 * decrement shut with an option set.
 */
#define OPT_RCVLOWAT	(1 << 0)	/* SO_RCVLOWAT > 1 */
#define OPT_PEEK_OFF	(1 << 1)	/* SO_PEEK_OFF >= 0 */
#define OPT_INQ		(1 << 2)	/* TCP_INQ on */
#define OPT_TIMESTAMP	(1 << 3)	/* SO_TIMESTAMP*, receive SO_TIMESTAMPING */
/* SO_TIMESTAMPING flags under which tcp_recvmsg() adds a receive timestamp. */
#define OPT_TSTAMP_RX	(SOF_TIMESTAMPING_RX_SOFTWARE | SOF_TIMESTAMPING_RX_HARDWARE | \
			 SOF_TIMESTAMPING_SOFTWARE | SOF_TIMESTAMPING_RAW_HARDWARE)
/*
 * Options about the socket's own sends: they go by TCP, and nothing needs
 * to reach the peer (bpf_sockopt.c sets our own fallback).
 */
#define OPT_ZEROCOPY	(1 << 16)	/* SO_ZEROCOPY on */
#define OPT_SENDS	OPT_ZEROCOPY

/* Sockets in opt_socks at once, at most; more are counted, not seen. */
#define MAX_OPT_SOCKS	MAX_ENTRIES

struct opt_gate {
	__u64 sockets;		/* entries in opt_socks now */
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
 * Keys that two sockets claimed (bpf_sockops.c, mark_collision()), kept in
 * an LRU hash so that old clashes make room for new ones.  A key holds both
 * initial sequence numbers: no later connection has it again.
 */
#define MAX_COLLIDED		1024

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
	/*
	 * 1: load.sh --cross-netns.  Connections between namespaces of this
	 * host are redirected too (struct sock_key's scope); loopback stays
	 * per namespace.  Read at ESTABLISHED: it applies to new connections.
	 */
	__u32 cross_netns;
	__u32 skip_lists;	/* SKIP_LIST_*: the skip lists with entries */
};

/*
 * The scope of a key (struct sock_key) when the connection's addresses
 * are not loopback and --cross-netns is on.  No netns cookie is ever this
 * large: they count up from 1.
 */
#define SCOPE_HOST	(~0ULL)

#endif /* __BPF_SOCKOPS_H */
