// SPDX-License-Identifier: GPL-2.0
/*
 * bpf_sockops.c - put every established TCP socket into the sockhash.
 *
 * A sock_ops program attached to a cgroup runs at points of a TCP socket's
 * life.  When a connection becomes established, on the connecting side
 * (ACTIVE_ESTABLISHED) and on the accepting side (PASSIVE_ESTABLISHED), we
 * store the socket under its own key.  bpf_redir then finds a sender's peer
 * by the mirrored key.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
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

static __always_inline void sockops_insert(struct bpf_sock_ops *skops, __u32 op)
{
	struct sock_key key = {};
	struct bypass_stats *st;
	__u32 zero = STATS_KEY;
	long err;

	if (sockops_key(skops, &key))
		return;
	/*
	 * BPF_NOEXIST: a key already present belongs to another live socket
	 * (it cannot be ours: we insert once, when we become established).
	 */
	err = bpf_sock_hash_update(skops, &sock_ops_map, &key, BPF_NOEXIST);

	st = bpf_map_lookup_elem(&stats, &zero);
	if (st) {
		if (err)
			st->insert_failed++;
		else
			st->sockets_inserted++;
	}
	if (!err)
		trace_established(op, &key);
}

SEC("sockops")
int bpf_sockmap(struct bpf_sock_ops *skops)
{
	__u32 op = CTX_READ(skops->op);

	switch (op) {
	case BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB:
	case BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB:
		sockops_insert(skops, op);
		break;
	default:
		break;
	}
	/* sock_ops programs return 1; the reply field carries any answer. */
	return 1;
}

char _license[] SEC("license") = "GPL";
