/* SPDX-License-Identifier: GPL-2.0 */
/*
 * bpf_maps.h - the maps, defined once for both BPF objects.
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

/* This CPU's counters: one lookup, then plain increments (no atomics). */
static __always_inline struct bypass_stats *stats_this_cpu(void)
{
	__u32 zero = STATS_KEY;

	return bpf_map_lookup_elem(&stats, &zero);
}

#endif /* __BPF_MAPS_H */
