/* SPDX-License-Identifier: GPL-2.0 */
/*
 * bpf_maps.h - the maps, defined once for both BPF objects, and the small
 * helpers both programs use on them.
 *
 * bpf_sockops.o creates them and load.sh pins them.  bpf_redir.o carries the
 * same definitions only so that its code can name them: load.sh loads it with
 * "map name ... pinned ...", which makes libbpf reuse the pinned maps instead
 * of creating new ones.  The definitions must therefore match exactly, which
 * is why they live in this one file.
 */
#ifndef __BPF_MAPS_H
#define __BPF_MAPS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "bpf_sockops.h"

/* Established sockets, each under its own struct sock_key (bpf_sockops.h). */
struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, MAX_ENTRIES);
	__type(key, struct sock_key);
	__type(value, __u64);	/* the socket; user space reads its cookie */
} sock_ops_map SEC(".maps");

/*
 * Each socket in the sockhash keeps its peer's key beside it, in socket
 * local storage, computed once at ESTABLISHED: bpf_redir then does no key
 * arithmetic and no context reads on the send path.  The kernel frees the
 * storage with the socket.
 */
struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct peer_info);
} peer_keys SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct bypass_stats);
} stats SEC(".maps");

/* The host's backlog (bpf_sockops.h): one counter shared by all CPUs. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct backlog);
} backlog SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct bypass_config);
} config SEC(".maps");

/* The skip lists: see bpf_sockops.h. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_SKIP_PORTS);
	__type(key, __u32);	/* port, host byte order */
	__type(value, __u64);	/* sockets skipped because of it */
} skip_ports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_SKIP_CGROUPS);
	__type(key, __u64);	/* cgroup v2 ID */
	__type(value, __u64);	/* sockets skipped because of it */
} skip_cgroups SEC(".maps");

/* Keys two sockets claimed: see bpf_sockops.h. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, MAX_COLLIDED);
	__type(key, struct sock_key);
	__type(value, __u32);	/* unused: the key is the mark */
} collided SEC(".maps");

/*
 * Options set after the handshake (bpf_sockops.h): the sockets that set one
 * the bypass cannot honour, by their own key, and how many there are.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, MAX_OPT_SOCKS);
	__type(key, struct sock_key);
	__type(value, __u32);	/* OPT_* */
} opt_socks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct opt_gate);
} opt_gate SEC(".maps");

/* This CPU's counters: one lookup, then plain increments (no atomics). */
static __always_inline struct bypass_stats *stats_this_cpu(void)
{
	__u32 zero = STATS_KEY;

	return bpf_map_lookup_elem(&stats, &zero);
}

/*
 * The peer's key is ours with local and remote swapped, and the other way
 * round: bpf_sockops mirrors a socket's key to find its peer, bpf_redir
 * mirrors the peer's key back to find its own socket.
 */
static __always_inline void mirror_key(const struct sock_key *key,
				       struct sock_key *peer)
{
	peer->scope = key->scope;
	__builtin_memcpy(peer->local_ip, key->remote_ip, sizeof(peer->local_ip));
	__builtin_memcpy(peer->remote_ip, key->local_ip, sizeof(peer->remote_ip));
	peer->local_port = key->remote_port;
	peer->remote_port = key->local_port;
	peer->local_seq = key->remote_seq;
	peer->remote_seq = key->local_seq;
}

/*
 * Add DELTA units to the host's backlog, and return the new total.  The add
 * is atomic (one BPF_XADD); the total is read after it and may already
 * include other CPUs' adds, which is all a threshold needs.  (Returning the
 * add's own result would need -mcpu=v3's BPF_FETCH.)
 */
static __always_inline __u64 backlog_add(__s64 delta)
{
	__u32 zero = 0;
	struct backlog *b = bpf_map_lookup_elem(&backlog, &zero);

	if (!b)
		return 0;
	if (delta)
		__sync_fetch_and_add(&b->units, delta);
	return *(volatile __u64 *)&b->units;
}

/* Take a connection's share out of the host's backlog. */
static __always_inline void backlog_release(struct peer_info *peer)
{
	if (peer->charged) {
		backlog_add(-(__s64)peer->charged);
		peer->charged = 0;
	}
}

/*
 * Take a socket that set an option out of opt_socks, when it closes or
 * connects again: its key is its peer's, mirrored.
 */
static __always_inline void opt_forget(struct peer_info *peer)
{
	struct opt_gate *gate;
	struct sock_key self;
	__u32 zero = 0;

	if (!(peer->flags & PEER_OPTION))
		return;
	peer->flags &= ~PEER_OPTION;
	mirror_key(&peer->key, &self);
	if (bpf_map_delete_elem(&opt_socks, &self))
		return;		/* never added: opt_socks was full */
	gate = bpf_map_lookup_elem(&opt_gate, &zero);
	if (gate)
		__sync_fetch_and_add(&gate->sockets, -1);
}

#endif /* __BPF_MAPS_H */
