// SPDX-License-Identifier: GPL-2.0
/*
 * bpf_sockops.c - put every established TCP socket into the sockhash.
 *
 * A sock_ops program attached to a cgroup runs at points of a TCP socket's
 * life.  When a connection becomes established, on the connecting side
 * (ACTIVE_ESTABLISHED) and on the accepting side (PASSIVE_ESTABLISHED), we
 * store the socket in the sockhash under its own key, and its peer's key
 * (ours, mirrored) in the socket's local storage, where bpf_redir finds it
 * on every send.  Sockets the bypass cannot serve like TCP (SO_RCVLOWAT set)
 * are left out, and so are those the operator listed (skip_ports,
 * skip_cgroups), and those made ESTABLISHED by TCP_REPAIR, whose tuple and
 * sequence numbers are the caller's choice.  A key another socket holds is
 * never taken over: both sockets then stay on TCP (collisions).
 *
 * It also counts the sockets that leave the sockhash, so that status.sh
 * knows how full the map is without walking it (sockets_inserted -
 * sockets_removed).  A TCP socket leaves the sockhash in exactly two places
 * (net/core/sock_map.c, 6.1 and 6.12; tcp_bpf no longer hooks unhash):
 *
 * - sock_map_close(), when its owner closes the last file descriptor:
 *   inet_release() runs the cgroup's sock_release programs right before
 *   calling it, so bpf_release below counts the socket out there;
 * - sock_map_destroy(), when the kernel destroys a socket that never had a
 *   file: one that a listener never handed to accept() (the listener
 *   closed, or inet_csk_reqsk_queue_add() found it closed).  Such a socket
 *   goes through tcp_set_state(TCP_CLOSE) first, and the
 *   BPF_SOCK_OPS_STATE_CB that we ask for on every inserted socket without
 *   a file counts it out there.
 *
 * The state callback costs a program run per state change, three or four
 * per socket at close, and most sockets do not need it: a connect()ed
 * socket has its file from the start, and an accepted one has it once
 * accept() returned.  So only a socket without a file asks for it (every
 * accepted socket at PASSIVE_ESTABLISHED, which runs before accept()), and
 * drops it at its first state change with a file.  bpf_release does the
 * rest at close(), for every socket that has a file.
 *
 * TCP_CLOSE alone would be wrong both ways: a socket reset by its peer, or
 * done with both FINs after shutdown(), reaches TCP_CLOSE but stays in the
 * map until its owner closes it (too early), and a socket closed in
 * ESTABLISHED left the map at close() but reaches TCP_CLOSE only after
 * FIN_WAIT1 or LAST_ACK (too late).  The socket's in_map field makes sure
 * each entry is counted out once.  Kernel sockets (no file, and inet_release
 * skips sock_release programs for them) are counted out at TCP_CLOSE too,
 * which can be a little early or late; other counting errors are listed in
 * docs/operations.md.
 */
#include <linux/bpf.h>
#include <linux/errno.h>	/* E2BIG: bpf_sock_hash_update() on a full map */
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_core_read.h>
#include "bpf_sockops.h"
#include "bpf_maps.h"
#include "sock_key.h"

#define AF_INET		2
#define AF_INET6	10

/*
 * The kernel fields that tell whether a socket has a file, and its receive
 * low-water mark, declared alone: CO-RE (preserve_access_index) finds their
 * offsets in the running kernel's BTF, and the "___sockops" suffix keeps
 * these apart from the real types, whose names libbpf matches without it.
 */
struct socket___sockops {
	void *file;
} __attribute__((preserve_access_index));

struct sock___sockops {
	struct socket___sockops *sk_socket;
	int sk_rcvlowat;
} __attribute__((preserve_access_index));

/*
 * Fill key->local_ip/remote_ip from the context.
 *
 * IPv4 addresses are written v4-mapped (::ffff:a.b.c.d) so that both ends of
 * a v4 connection to a dual-stack listener produce the same key: the client
 * socket is AF_INET, the accepted one is AF_INET6 with mapped addresses.
 * Every address word stays in network byte order, as the context gives it.
 * Each context field is read with CTX_READ(): see bpf_sockops.h for the
 * verifier rule behind it.
 */
static __always_inline int sockops_key(struct bpf_sock_ops *skops,
				       struct sock_key *key, __u32 cross_netns)
{
	__u32 family = CTX_READ(skops->family);

	if (family == AF_INET) {
		__u32 lip = CTX_READ(skops->local_ip4);
		__u32 rip = CTX_READ(skops->remote_ip4);

		key->local_ip[2] = bpf_htonl(0x0000ffff);
		key->local_ip[3] = lip;
		key->remote_ip[2] = bpf_htonl(0x0000ffff);
		key->remote_ip[3] = rip;
	} else if (family == AF_INET6) {
		key->local_ip[0] = CTX_READ(skops->local_ip6[0]);
		key->local_ip[1] = CTX_READ(skops->local_ip6[1]);
		key->local_ip[2] = CTX_READ(skops->local_ip6[2]);
		key->local_ip[3] = CTX_READ(skops->local_ip6[3]);
		key->remote_ip[0] = CTX_READ(skops->remote_ip6[0]);
		key->remote_ip[1] = CTX_READ(skops->remote_ip6[1]);
		key->remote_ip[2] = CTX_READ(skops->remote_ip6[2]);
		key->remote_ip[3] = CTX_READ(skops->remote_ip6[3]);
	} else {
		return -1;
	}

	/* local_port is in host byte order already. */
	key->local_port = CTX_READ(skops->local_port);
	/*
	 * remote_port holds the port in network byte order in its upper 16
	 * bits (on little-endian hosts the kernel shifts the __be16 up), so
	 * one bpf_ntohl() gives the port in host order on any host.
	 */
	key->remote_port = bpf_ntohl(CTX_READ(skops->remote_port));
	/*
	 * At ESTABLISHED our SYN is acked and the peer's is received, so
	 * snd_una and rcv_nxt are the two initial sequence numbers + 1, the
	 * same pair, mirrored, on both ends.  (With TCP Fast Open the server
	 * is established before its SYN-ACK is acked: its keys do not match,
	 * and that connection simply stays on TCP.)
	 */
	key->local_seq = CTX_READ(skops->snd_una);
	key->remote_seq = CTX_READ(skops->rcv_nxt);
	key->scope = sock_key_scope(key, bpf_get_netns_cookie(skops), cross_netns);
	return 0;
}

/* True for an IPv4 connection, including one on a v4-mapped AF_INET6 socket. */
static __always_inline int key_is_v4(const struct sock_key *key)
{
	return key->local_ip[0] == 0 && key->local_ip[1] == 0 &&
	       key->local_ip[2] == bpf_htonl(0x0000ffff);
}

static __always_inline void trace_established(const struct bypass_config *cfg,
					      __u32 op, const struct sock_key *key)
{
	if (!cfg || !cfg->trace)
		return;
	/* The seed's format, but with both ports in host order. */
	if (key_is_v4(key))
		bpf_printk("<<< ipv4 op = %d, port %d --> %d",
			   op, key->local_port, key->remote_port);
	else
		bpf_printk("<<< ipv6 op = %d, port %d --> %d",
			   op, key->local_port, key->remote_port);
}

static __always_inline void count_insert(long err)
{
	struct bypass_stats *st = stats_this_cpu();

	if (!st)
		return;
	if (!err) {
		/* Atomic: see struct bypass_stats. */
		__sync_fetch_and_add(&st->sockets_inserted, 1);
		return;
	}
	st->insert_failed++;
	if (err == -E2BIG)
		st->insert_map_full++;
}

/*
 * A socket whose sends went by TCP (fallback set) and that closes, or
 * starts a new connection, leaves the number of connections on TCP now:
 * count it once (struct bypass_stats).
 */
static __always_inline void count_closed_on_tcp(struct peer_info *peer)
{
	struct bypass_stats *st;

	if (!peer->fallback)
		return;
	peer->fallback = FALLBACK_NONE;
	peer->flags |= PEER_FOR_GOOD;
	st = stats_this_cpu();
	if (st)
		__sync_fetch_and_add(&st->closed_on_tcp, 1);
}

/* Count the socket's entries out of the sockhash, once. */
static __always_inline void count_removed(struct peer_info *peer)
{
	struct bypass_stats *st = stats_this_cpu();
	__u32 n = peer->in_map;

	peer->in_map = 0;
	if (st)
		__sync_fetch_and_add(&st->sockets_removed, n);
}

/*
 * Another socket holds the key we were to take: record the key and its
 * mirror in the collided map.  bpf_redir.c looks its peer's key up there
 * before it first redirects to a socket, so no socket redirects to a key
 * that two sockets claimed, nor from one.
 *
 * A key holds the four-tuple and both initial sequence numbers, so two
 * keys clash only if two connections in two namespaces share all of it: a
 * clash of the clients' keys is one of the servers' keys too (the mirror).
 * Whichever end of each pair comes first wins its key, so the winners may
 * be one connection's client and the other's server, each of which would
 * send into the other connection.  But the losing client records the clash
 * here, at its ACTIVE_ESTABLISHED, before it sends the ACK that makes its
 * server established: a server that took the other server's key finds the
 * record before its first redirect, and so does the winning client, which
 * looks up the same pair.  A connection that was paired before the clash
 * (its server won and they talked) is the right pair, and stays on the
 * bypass; the losers are not in the map and go by TCP.  Nothing ever goes
 * to the wrong namespace: the bypass fails closed.
 *
 * (Marking the holder's own storage instead would need the holder: a
 * sockhash lookup returns a socket reference, which sock_ops may not
 * release, as bpf_sk_release() is refused to it.)
 */
static __always_inline void mark_collision(const struct sock_key *key,
					   const struct sock_key *mirror)
{
	__u32 one = 1;

	bpf_map_update_elem(&collided, key, &one, BPF_ANY);
	bpf_map_update_elem(&collided, mirror, &one, BPF_ANY);
}

/*
 * True if the socket has a file: then its owner's close() takes it out of
 * the sockhash, and bpf_release counts it.  The skc_to_tcp_sock() helper
 * turns the context's socket into a BTF pointer that may be read field by
 * field (root only: it needs CAP_PERFMON).
 */
static __always_inline int sock_has_file(struct bpf_sock *sk)
{
	struct sock___sockops *s = (void *)bpf_skc_to_tcp_sock(sk);
	struct socket___sockops *sock;

	if (!s)
		return 0;
	sock = s->sk_socket;
	return sock && sock->file;
}

/*
 * Ask for the socket's state changes if it has no file (see the top of this
 * file).  The helper sets the socket's flags to its argument: keep those
 * another agent's program set, and if one set the state callback already,
 * leave it to it (PEER_CB_OURS: the flag is ours to clear).
 */
static __always_inline void want_state_cb(struct bpf_sock_ops *skops,
					  struct bpf_sock *sk,
					  struct peer_info *peer)
{
	__u32 flags = CTX_READ(skops->bpf_sock_ops_cb_flags);

	if (sock_has_file(sk))
		return;
	peer->flags |= PEER_STATE_CB;
	if (flags & BPF_SOCK_OPS_STATE_CB_FLAG)
		return;
	if (!bpf_sock_ops_cb_flags_set(skops, flags | BPF_SOCK_OPS_STATE_CB_FLAG))
		peer->flags |= PEER_CB_OURS;
}

static __always_inline void sockops_insert(struct bpf_sock_ops *skops, __u32 op,
					   const struct bypass_config *cfg)
{
	struct bpf_sock *sk = CTX_READ(skops->sk);
	__u32 cross_netns = cfg ? cfg->cross_netns : 0;
	struct sock_key key = {};
	struct peer_info *peer;
	struct bypass_stats *st;
	long err;

	if (!sk || sockops_key(skops, &key, cross_netns))
		return;
	peer = bpf_sk_storage_get(&peer_keys, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (!peer) {
		count_insert(-1);
		return;
	}
	/* A socket that connected again: its old connection is over. */
	count_closed_on_tcp(peer);
	backlog_release(peer);
	opt_forget(peer);
	mirror_key(&key, &peer->key);
	peer->peer_sk = 0;
	peer->fallback = FALLBACK_NONE;
	/* A socket that connected again may still have our state callback. */
	peer->flags &= PEER_STATE_CB | PEER_CB_OURS;
	peer->tries = NO_PEER_TRIES;
	peer->idle = 0;
	peer->sent = 0;
	peer->bound = 0;
	/*
	 * BPF_NOEXIST: never replace another socket's entry.  Replacing (or
	 * deleting) an entry frees the unread data queued on that socket,
	 * and the newcomer may be another namespace's connection: see
	 * mark_collision().
	 */
	err = bpf_sock_hash_update(skops, &sock_ops_map, &key, BPF_NOEXIST);
	count_insert(err);
	if (err == -EEXIST) {
		mark_collision(&key, &peer->key);
		st = stats_this_cpu();
		if (st)
			st->collisions++;
	}
	if (err) {
		/*
		 * A socket still in the map under an earlier connection's
		 * key keeps its storage, so that entry is counted out when
		 * it goes; it just never redirects.
		 */
		if (peer->in_map)
			peer->flags |= PEER_FOR_GOOD;
		else
			bpf_sk_storage_delete(&peer_keys, sk);
		return;
	}
	peer->in_map++;
	trace_established(cfg, op, &key);
	want_state_cb(skops, sk, peer);
}

/*
 * A socket of ours without a file changed state.  If it has one now (it was
 * accept()ed), its close() will do what is left, in bpf_release: stop the
 * callbacks.  Else, when it closes, no close() will: take its share of the
 * host's backlog back (what it had queued on its peer is freed with the
 * peer, or read), take it out of the connections on TCP now if its sends
 * went by TCP, and count it out of the sockhash.  See the top of this file.
 */
static __always_inline void sockops_state(struct bpf_sock_ops *skops)
{
	struct bpf_sock *sk = CTX_READ(skops->sk);
	/* args[1] is the new state: BPF_TCP_* has the kernel's TCP_* values. */
	__u32 state = CTX_READ(skops->args[1]);
	struct peer_info *peer;
	__u32 flags;

	if (!sk)
		return;
	peer = bpf_sk_storage_get(&peer_keys, sk, 0, 0);
	if (!peer || !(peer->flags & PEER_STATE_CB))
		return;
	if (peer->in_map && !sock_has_file(sk)) {
		if (state != BPF_TCP_CLOSE)
			return;
		backlog_release(peer);
		count_closed_on_tcp(peer);
		count_removed(peer);
		return;
	}
	peer->flags &= ~PEER_STATE_CB;
	if (!(peer->flags & PEER_CB_OURS))
		return;
	flags = CTX_READ(skops->bpf_sock_ops_cb_flags);
	if (!bpf_sock_ops_cb_flags_set(skops, flags & ~BPF_SOCK_OPS_STATE_CB_FLAG))
		peer->flags &= ~PEER_CB_OURS;
}

/*
 * tcp_sock's repair bit, declared alone (CO-RE).  A one-bit field, which
 * moved between 6.1 and 6.12 (the fields of tcp_sock were regrouped by
 * cache line): BPF_CORE_READ_BITFIELD_PROBED() reads the byte that holds
 * it wherever this kernel's BTF puts it, and shifts the bit out.
 */
struct tcp_sock___repair {
	__u8 repair:1;
} __attribute__((preserve_access_index));

/*
 * True if a socket became ESTABLISHED by TCP_REPAIR: connect() on a socket
 * in repair mode (CRIU restoring a process, or anyone with CAP_NET_ADMIN in
 * the socket's network namespace, which every rootless container has)
 * sends no SYN.  tcp_connect() calls tcp_finish_connect(sk, NULL), which
 * runs ACTIVE_ESTABLISHED with the four-tuple and sequence numbers that the
 * caller set: the caller could build any socket's mirror key, and take its
 * peer's bytes.  So such a socket is never inserted.
 *
 * Two signs, either one enough: that callback has no skb (a real one has
 * the SYN-ACK), so skb_tcp_flags reads 0; and tp->repair is still set.
 */
static __always_inline int made_by_repair(struct bpf_sock_ops *skops, __u32 op)
{
	struct bpf_sock *sk = CTX_READ(skops->sk);
	__u32 flags = CTX_READ(skops->skb_tcp_flags);
	struct tcp_sock___repair *tp;

	if (op == BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB && !flags)
		return 1;
	if (!sk)
		return 0;
	tp = (void *)bpf_skc_to_tcp_sock(sk);
	if (!tp)
		return 0;
	return BPF_CORE_READ_BITFIELD_PROBED(tp, repair);
}

/*
 * True if the socket has a receive low-water mark (SO_RCVLOWAT > 1).
 *
 * The bypass cannot honour one.  TCP wakes a reader, and poll() reports
 * POLLIN, only once that many bytes are queued (tcp_recvmsg() waits for
 * sock_rcvlowat(); tcp_poll() asks tcp_stream_is_readable()).  A socket in
 * the sockhash reads with tcp_bpf_recvmsg(), which returns as soon as one
 * message is queued, and its sock_is_readable hook, sk_msg_is_readable(),
 * calls any queued message readable.  So such a socket is left on TCP.
 *
 * Only a mark the socket has when it becomes established is seen here: one
 * set before connect(), or inherited from the listener by an accepted
 * socket.  sock_ops has no callback for a later setsockopt().
 *
 * The mark is read from struct sock through the BTF pointer that
 * bpf_skc_to_tcp_sock() gives, as sock_has_file() reads: one load, where
 * bpf_getsockopt(SO_RCVLOWAT) cost about 65 ns per socket here, a
 * connection's setup paying it twice (docs/performance.md).
 */
static __always_inline int has_rcvlowat(struct bpf_sock_ops *skops)
{
	struct bpf_sock *sk = CTX_READ(skops->sk);
	struct sock___sockops *s;

	if (!sk)
		return 0;
	s = (void *)bpf_skc_to_tcp_sock(sk);
	return s && s->sk_rcvlowat > 1;
}

/*
 * The skip lists (bpf_sockops.h).  Both ends of a connection see the same
 * pair of ports, mirrored, so a listed port keeps out both ends; a listed
 * cgroup keeps out the sockets created in it, and their peers then find no
 * socket to redirect to and send by TCP too (struct peer_info's latch).
 */
static __always_inline int port_skipped(__u32 port)
{
	__u64 *hits = bpf_map_lookup_elem(&skip_ports, &port);

	if (!hits)
		return 0;
	/* Shared by all CPUs: an atomic add, once per connection end. */
	__sync_fetch_and_add(hits, 1);
	return 1;
}

static __always_inline int skip_port(struct bpf_sock_ops *skops)
{
	/* local_port is in host byte order, remote_port as in sockops_key(). */
	__u32 local = CTX_READ(skops->local_port);
	__u32 remote = bpf_ntohl(CTX_READ(skops->remote_port));

	return port_skipped(local) || port_skipped(remote);
}

/*
 * The kernel structures the cgroup walk reads, reduced to the fields it
 * reads.  preserve_access_index makes clang record each access by name, and
 * libbpf rewrites the offsets to this kernel's layout (CO-RE, from
 * /sys/kernel/btf/vmlinux) when load.sh loads the object.
 */
struct kernfs_node {
	struct kernfs_node *parent;
	__u64 id;
} __attribute__((preserve_access_index));

/* Linux 6.15 renamed kernfs_node::parent to __parent (now RCU-managed). */
struct kernfs_node___rcu_parent {
	struct kernfs_node *__parent;
} __attribute__((preserve_access_index));

struct cgroup {
	struct kernfs_node *kn;
} __attribute__((preserve_access_index));

struct sock_cgroup_data {
	struct cgroup *cgroup;
} __attribute__((preserve_access_index));

struct sock {
	struct sock_cgroup_data sk_cgrp_data;
	int sk_peek_off;
	unsigned long sk_flags;	/* until it moved into sock_common */
	__u32 sk_tsflags;	/* a __u16 before 6.5: libbpf sizes the load */
} __attribute__((preserve_access_index));

/* Newer kernels keep sk_flags in struct sock_common, as skc_flags. */
struct sock_common___flags {
	unsigned long skc_flags;
} __attribute__((preserve_access_index));

struct sock___flags {
	struct sock_common___flags __sk_common;
} __attribute__((preserve_access_index));

struct tcp_sock {
	__u8 recvmsg_inq:1;
} __attribute__((preserve_access_index));

/* Bits of sk_flags (include/net/sock.h); libbpf takes their values from BTF. */
enum sock_flags {
	SOCK_RCVTSTAMP = 11,
	SOCK_RCVTSTAMPNS = 12,
	SOCK_ZEROCOPY = 18,
};

static __always_inline struct kernfs_node *kn_parent(struct kernfs_node *kn)
{
	/* Resolved at load time: the branch this kernel lacks is dead code. */
	if (bpf_core_field_exists(struct kernfs_node___rcu_parent, __parent))
		return ((struct kernfs_node___rcu_parent *)kn)->__parent;
	return kn->parent;
}

/*
 * True if the socket's cgroup, or one of its ancestors, is in skip_cgroups.
 *
 * The socket's cgroup, not the current task's: at PASSIVE_ESTABLISHED this
 * runs in softirq, on behalf of whatever task the CPU happened to run, and
 * sock_ops has no bpf_get_current_cgroup_id() or bpf_sk_cgroup_id() anyway
 * (6.1 to 6.18).  sk->sk_cgrp_data.cgroup is the cgroup v2 of the task that
 * created the socket; an accepted socket inherits its listener's
 * (sk_clone_lock()).  It is also what decides whether this program runs for
 * a socket at all: the cgroup it is attached to must be that cgroup or an
 * ancestor of it.
 *
 * bpf_skc_to_tcp_sock() turns the context's socket into a BTF pointer whose
 * fields the verifier lets us read with plain loads (needs CAP_PERFMON,
 * i.e. root, like the rest of the bypass).  A cgroup's ID is its kernfs
 * node's ID, the directory's inode number, and the kernfs parents of a
 * cgroup's node are its ancestors' nodes, up to the root's.
 */
static __always_inline int skip_cgroup(struct bpf_sock_ops *skops)
{
	struct bpf_sock *sk = CTX_READ(skops->sk);
	struct kernfs_node *kn;
	struct sock *s;
	__u64 id, *hits;
	int i;

	if (!sk)
		return 0;
	s = (struct sock *)bpf_skc_to_tcp_sock(sk);
	if (!s)
		return 0;
	kn = s->sk_cgrp_data.cgroup->kn;
	for (i = 0; i < MAX_CGROUP_DEPTH && kn; i++) {
		id = kn->id;
		hits = bpf_map_lookup_elem(&skip_cgroups, &id);
		if (hits) {
			__sync_fetch_and_add(hits, 1);
			return 1;
		}
		kn = kn_parent(kn);
	}
	return 0;
}

static __always_inline int sk_flag(struct sock *s, unsigned long bit)
{
	unsigned long flags;

	/* Resolved at load time: the branch this kernel lacks is dead code. */
	if (bpf_core_field_exists(struct sock_common___flags, skc_flags))
		flags = ((struct sock___flags *)s)->__sk_common.skc_flags;
	else
		flags = s->sk_flags;
	return (flags >> bit) & 1;
}

/*
 * True if the socket has, when it becomes established, an option that the
 * bypass cannot honour besides SO_RCVLOWAT (has_rcvlowat()): set before
 * connect(), or inherited from the listener by an accepted socket.  Then
 * it is left on TCP, as for SO_RCVLOWAT.  bpf_sockopt sees those set
 * later, but not these: the socket had no storage then.  bpf_getsockopt()
 * cannot read them (its list of options has none), so we read the fields
 * that setsockopt() sets, through bpf_skc_to_tcp_sock() as skip_cgroup()
 * does: SO_PEEK_OFF, SO_TIMESTAMP(NS), SO_TIMESTAMPING with a receive
 * flag, SO_ZEROCOPY, TCP_INQ (bpf_sockopt.c says why each).
 */
static __always_inline int has_options(struct bpf_sock_ops *skops)
{
	struct bpf_sock *sk = CTX_READ(skops->sk);
	struct sock *s;

	if (!sk)
		return 0;
	s = (struct sock *)bpf_skc_to_tcp_sock(sk);
	if (!s)
		return 0;
	if (s->sk_peek_off >= 0 || s->sk_tsflags & OPT_TSTAMP_RX)
		return 1;
	if (sk_flag(s, bpf_core_enum_value(enum sock_flags, SOCK_RCVTSTAMP)) ||
	    sk_flag(s, bpf_core_enum_value(enum sock_flags, SOCK_RCVTSTAMPNS)) ||
	    sk_flag(s, bpf_core_enum_value(enum sock_flags, SOCK_ZEROCOPY)))
		return 1;
	return BPF_CORE_READ_BITFIELD((struct tcp_sock *)s, recvmsg_inq);
}

SEC("sockops")
int bpf_sockmap(struct bpf_sock_ops *skops)
{
	__u32 op = CTX_READ(skops->op);
	struct bypass_config *cfg;
	struct bypass_stats *st;
	__u32 zero = CONFIG_KEY;
	__u32 lists;

	switch (op) {
	case BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB:
	case BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB:
		cfg = bpf_map_lookup_elem(&config, &zero);
		/* An array's lookup cannot fail, but the verifier wants a check. */
		lists = cfg ? cfg->skip_lists : SKIP_LIST_PORTS | SKIP_LIST_CGROUPS;
		/* Left on TCP, counted under the first reason that applies. */
		st = stats_this_cpu();
		if (made_by_repair(skops, op)) {
			if (st)
				st->repair_refused++;
		} else if (lists & SKIP_LIST_PORTS && skip_port(skops)) {
			if (st)
				st->sockets_skipped_port++;
		} else if (lists & SKIP_LIST_CGROUPS && skip_cgroup(skops)) {
			if (st)
				st->sockets_skipped_cgroup++;
		} else if (has_rcvlowat(skops) || has_options(skops)) {
			if (st)
				st->sockets_skipped++;
		} else {
			sockops_insert(skops, op, cfg);
		}
		break;
	case BPF_SOCK_OPS_STATE_CB:
		sockops_state(skops);
		break;
	default:
		break;
	}
	/* sock_ops programs return 1; the reply field carries any answer. */
	return 1;
}

/*
 * Runs in inet_release() when the last file descriptor of a socket of this
 * cgroup is closed, right before sock_map_close() takes it out of the
 * sockhash: take its share of the host's backlog back, take it out of the
 * connections on TCP now if its sends went by TCP, and count it out of the
 * sockhash.  Returning 1 lets the close go on, as it always does.
 */
SEC("cgroup/sock_release")
int bpf_release(struct bpf_sock *sk)
{
	struct peer_info *peer;

	peer = bpf_sk_storage_get(&peer_keys, sk, 0, 0);
	if (!peer)
		return 1;
	backlog_release(peer);
	count_closed_on_tcp(peer);
	opt_forget(peer);
	if (peer->in_map)
		count_removed(peer);
	return 1;
}

char _license[] SEC("license") = "GPL";
