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
 * are left out.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include <asm/socket.h>		/* SOL_SOCKET, SO_RCVLOWAT: per-arch values */
#include "bpf_sockops.h"
#include "bpf_maps.h"

#define AF_INET		2
#define AF_INET6	10

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
				       struct sock_key *key)
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
	key->netns = bpf_get_netns_cookie(skops);
	return 0;
}

/* True for an IPv4 connection, including one on a v4-mapped AF_INET6 socket. */
static __always_inline int key_is_v4(const struct sock_key *key)
{
	return key->local_ip[0] == 0 && key->local_ip[1] == 0 &&
	       key->local_ip[2] == bpf_htonl(0x0000ffff);
}

static __always_inline void trace_established(__u32 op, const struct sock_key *key)
{
	__u32 zero = CONFIG_KEY;
	struct bypass_config *cfg = bpf_map_lookup_elem(&config, &zero);

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
	if (err)
		st->insert_failed++;
	else
		st->sockets_inserted++;
}

static __always_inline void sockops_insert(struct bpf_sock_ops *skops, __u32 op)
{
	struct bpf_sock *sk = CTX_READ(skops->sk);
	struct sock_key key = {};
	struct peer_info *peer;
	long err;

	if (!sk || sockops_key(skops, &key))
		return;
	peer = bpf_sk_storage_get(&peer_keys, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (!peer) {
		count_insert(-1);
		return;
	}
	mirror_key(&key, &peer->key);
	peer->use_tcp = LATCH_NONE;
	/*
	 * BPF_NOEXIST: never replace another socket's entry.  Replacing (or
	 * deleting) an entry frees the unread data queued on that socket.
	 * With the sequence numbers in the key, a clash is not expected.
	 */
	peer->charged = 0;
	err = bpf_sock_hash_update(skops, &sock_ops_map, &key, BPF_NOEXIST);
	if (err)
		bpf_sk_storage_delete(&peer_keys, sk);
	count_insert(err);
	if (err)
		return;
	trace_established(op, &key);
	/*
	 * Call us back on its state changes, to take its share of the host's
	 * backlog back when it closes.  The helper sets the socket's flags to
	 * its argument: keep those another agent's program set.
	 */
	bpf_sock_ops_cb_flags_set(skops, CTX_READ(skops->bpf_sock_ops_cb_flags) |
					 BPF_SOCK_OPS_STATE_CB_FLAG);
}

/*
 * A socket of ours changed state.  When it closes, take its share of the
 * host's backlog back: what it had queued on its peer is freed with the
 * peer, or read.  (It leaves the sockhash by itself: sock_map_close().)
 */
static __always_inline void sockops_state(struct bpf_sock_ops *skops)
{
	struct bpf_sock *sk = CTX_READ(skops->sk);
	struct peer_info *peer;

	/* args[1] is the new state: BPF_TCP_* has the kernel's TCP_* values. */
	if (!sk || CTX_READ(skops->args[1]) != BPF_TCP_CLOSE)
		return;
	peer = bpf_sk_storage_get(&peer_keys, sk, 0, 0);
	if (peer)
		backlog_release(peer);
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
 * socket.  sock_ops has no callback for a later setsockopt().  Reading
 * SO_RCVLOWAT from sock_ops needs Linux 6.1 (bpf_getsockopt() on SOL_SOCKET
 * became sk_getsockopt()); older kernels return an error and we go on as if
 * no mark were set.
 */
static __always_inline int has_rcvlowat(struct bpf_sock_ops *skops)
{
	int lowat = 1;

	if (bpf_getsockopt(skops, SOL_SOCKET, SO_RCVLOWAT, &lowat, sizeof(lowat)))
		return 0;
	return lowat > 1;
}

SEC("sockops")
int bpf_sockmap(struct bpf_sock_ops *skops)
{
	__u32 op = CTX_READ(skops->op);

	switch (op) {
	case BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB:
	case BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB:
		if (has_rcvlowat(skops)) {
			struct bypass_stats *st = stats_this_cpu();

			if (st)
				st->sockets_skipped++;
			break;
		}
		sockops_insert(skops, op);
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

char _license[] SEC("license") = "GPL";
