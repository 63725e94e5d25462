/* SPDX-License-Identifier: GPL-2.0 */
/*
 * sock_key.h - the scope of a sockhash key (struct sock_key), decided in one
 * place for bpf_sockops.c, which builds the keys, and for the tests' probes,
 * which look them up.  Plain C: no helper, no map, no byte-order macro.
 */
#ifndef __SOCK_KEY_H
#define __SOCK_KEY_H

#include "bpf_sockops.h"

/*
 * True if ip, an IPv6 address or a v4-mapped one as struct sock_key holds
 * them (network byte order), is a loopback address: ::1, or ::ffff:127.x.y.z
 * (127.0.0.0/8).  Compared byte by byte: in network byte order the first
 * byte of the address is the first in memory on any host, so no ntohl().
 */
static inline int sock_key_loopback(const __u32 ip[4])
{
	const __u8 *b = (const __u8 *)ip;

	if (ip[0] || ip[1])
		return 0;
	/* ::1: twelve zero bytes, then 0.0.0.1. */
	if (!ip[2] && !b[12] && !b[13] && !b[14] && b[15] == 1)
		return 1;
	/* ::ffff:127.0.0.0/8: 0000 ffff, then 127 as the first octet. */
	return !b[8] && !b[9] && b[10] == 0xff && b[11] == 0xff && b[12] == 127;
}

/*
 * The key's scope: the socket's netns cookie, or SCOPE_HOST for a
 * connection that may cross namespaces (cross_netns, load.sh --cross-netns).
 *
 * Loopback stays per namespace always: every namespace has its own 127.0.0.1
 * and ::1, and two namespaces' loopback connections with one four-tuple are
 * common (each container's sidecar on 127.0.0.1:15001).  Other addresses
 * belong to interfaces, and a connection between two namespaces of this
 * host, over a veth pair and a bridge, has its two ends in two namespaces:
 * only a scope they share, the host, lets their keys mirror.  A connection
 * is loopback if either address is: both ends see the same pair.
 */
static inline __u64 sock_key_scope(const struct sock_key *key, __u64 netns,
				   __u32 cross_netns)
{
	if (!cross_netns || sock_key_loopback(key->local_ip) ||
	    sock_key_loopback(key->remote_ip))
		return netns;
	return SCOPE_HOST;
}

#endif /* __SOCK_KEY_H */
