// SPDX-License-Identifier: GPL-2.0
/*
 * bpf_redir.c - send each message straight into the peer's receive queue.
 *
 * An sk_msg program attached (msg_verdict) to the sockhash runs on every
 * sendmsg() of a socket in that map.  It builds the key under which the peer
 * socket was stored by bpf_sockops, the mirror of our own, and asks the kernel
 * to redirect the message to that socket's ingress queue.  The data then skips
 * TCP, IP and the loopback device entirely.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "bpf_sockops.h"
#include "bpf_maps.h"

#define AF_INET		2

/*
 * The peer's key: its local end is our remote end and vice versa.
 * Byte order and the v4-mapped form are as in bpf_sockops.h, and every
 * context field is read with CTX_READ() for the reason given there.
 */
static __always_inline void peer_key(struct sk_msg_md *msg, struct sock_key *key)
{
	__u32 family = CTX_READ(msg->family);

	if (family == AF_INET) {
		__u32 lip = CTX_READ(msg->local_ip4);
		__u32 rip = CTX_READ(msg->remote_ip4);

		key->local_ip[2] = bpf_htonl(0x0000ffff);
		key->local_ip[3] = rip;
		key->remote_ip[2] = bpf_htonl(0x0000ffff);
		key->remote_ip[3] = lip;
	} else {
		/*
		 * Only AF_INET6 is left: bpf_sockops inserts nothing else.
		 * v4-mapped sockets land here, already in mapped form.
		 */
		key->local_ip[0] = CTX_READ(msg->remote_ip6[0]);
		key->local_ip[1] = CTX_READ(msg->remote_ip6[1]);
		key->local_ip[2] = CTX_READ(msg->remote_ip6[2]);
		key->local_ip[3] = CTX_READ(msg->remote_ip6[3]);
		key->remote_ip[0] = CTX_READ(msg->local_ip6[0]);
		key->remote_ip[1] = CTX_READ(msg->local_ip6[1]);
		key->remote_ip[2] = CTX_READ(msg->local_ip6[2]);
		key->remote_ip[3] = CTX_READ(msg->local_ip6[3]);
	}
	/* remote_port: network order in the upper 16 bits, see bpf_sockops.c. */
	key->local_port = bpf_ntohl(CTX_READ(msg->remote_port));
	/* local_port: host order already. */
	key->remote_port = CTX_READ(msg->local_port);
	key->netns = bpf_get_netns_cookie(msg);
}

SEC("sk_msg")
int bpf_redir(struct sk_msg_md *msg)
{
	struct sock_key key = {};
	struct bypass_stats *st;
	__u32 zero = STATS_KEY;
	__u32 size = CTX_READ(msg->size);
	long verdict;

	peer_key(msg, &key);
	/*
	 * On a hit this returns SK_PASS and marks the message for the peer's
	 * ingress queue.  On a miss it returns SK_DROP, and returning that
	 * would fail the sender's send() with EACCES: a socket whose peer is
	 * not in the map (not established yet, in another cgroup, or on
	 * another host) must simply use TCP.  So we always return SK_PASS.
	 */
	verdict = bpf_msg_redirect_hash(msg, &sock_ops_map, &key, BPF_F_INGRESS);

	st = bpf_map_lookup_elem(&stats, &zero);
	if (st) {
		if (verdict == SK_PASS) {
			st->msgs_redirected++;
			st->bytes_redirected += size;
		} else {
			st->msgs_passed++;
			st->bytes_passed += size;
		}
	}
	return SK_PASS;
}

char _license[] SEC("license") = "GPL";
