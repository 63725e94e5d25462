// SPDX-License-Identifier: GPL-2.0
/*
 * bpf_redir.c - send each message straight into the peer's receive queue,
 * as long as the peer keeps reading.
 *
 * An sk_msg program attached (sk_msg_verdict) to the sockhash runs on every
 * sendmsg() of a socket in that map.  bpf_sockops stored the peer's key in
 * the socket's local storage when the connection was established; we fetch
 * it and ask the kernel to redirect the message to that socket's ingress
 * queue.  The data then skips TCP, IP and the loopback device entirely.
 *
 * TCP holds a sender back once the receiver's buffer is full.  A redirect
 * does not: bpf_tcp_ingress() (net/ipv4/tcp_bpf.c) queues the message on the
 * peer whatever it holds already, checking only the host's TCP memory.  So
 * before each redirect we look at what the peer holds unread, and at the
 * host's TCP memory, and when either is over its bound the connection goes
 * to TCP for good (the latch in struct peer_info), where flow control holds
 * the sender back again.
 *
 * This runs on every send, so it does the least it can: one storage lookup,
 * a few loads from kernel memory, the redirect, one per-CPU counter update.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include "bpf_sockops.h"
#include "bpf_maps.h"

/*
 * The kernel structures we read, reduced to the fields we read, as the
 * kernel selftests' bpf_tracing_net.h does.  preserve_access_index makes
 * clang record every access as a CO-RE relocation, which libbpf rewrites to
 * the running kernel's offsets from its BTF at load time: one object fits
 * every kernel, with no vmlinux.h.
 */
/*
 * A pointer's target type needs a name for libbpf to find it in the kernel's
 * BTF; the "___bypass" suffix is ignored in the match.
 */
typedef struct {
	long counter;
} atomic_long_t___bypass;

struct proto {
	atomic_long_t___bypass *memory_allocated;	/* pages, all TCP sockets */
	unsigned long *memory_pressure;	/* &tcp_memory_pressure */
} __attribute__((preserve_access_index));

struct sock_common {
	struct proto *skc_prot;
} __attribute__((preserve_access_index));

struct sock {
	struct sock_common __sk_common;
	struct {
		struct {
			int counter;
		} rmem_alloc;	/* atomic_t sk_rmem_alloc */
	} sk_backlog;
} __attribute__((preserve_access_index));

/* The kernel's context behind struct sk_msg_md. */
struct sk_msg {
	struct sock *sk_redir;	/* set by bpf_msg_redirect_hash() */
	struct sock *sk;	/* the sending socket */
} __attribute__((preserve_access_index));

/*
 * Linux 6.2+: the kernel's struct sk_msg behind our context, as a pointer
 * the verifier lets us read through.  __weak: on older kernels libbpf
 * leaves it NULL and the verifier drops the branch that calls it.
 */
extern void *bpf_cast_to_kern_ctx(void *obj) __ksym __weak;

/*
 * Whether the host's TCP memory rules out a redirect now: all TCP sockets
 * hold max_tcp_mem (bytes), or TCP is under memory pressure.
 *
 * The pressure is the kernel's own state, not a number we could compare:
 * __sk_mem_raise_allocated() sets tcp_memory_pressure when TCP's memory
 * passes tcp_mem[1], and only clears it at the next allocation that finds
 * TCP under tcp_mem[0].  Meanwhile bpf_tcp_ingress() asks the same function
 * for the peer's share, and it refuses a peer that holds more than
 * tcp_mem[2] / (TCP sockets on the host): bpf_tcp_ingress() then fails with
 * ENOMEM, and so does the sender's send(), which TCP never does.  With 800
 * TCP sockets on a 24 GiB host that share is 2.8 MiB.  Hence load.sh's
 * default for max_tcp_mem is tcp_mem[0], below which TCP refuses no memory,
 * and the pressure check for a larger max_tcp_mem.
 *
 * The memory count is what /proc/net/sockstat calls "mem", in pages.  The
 * kernel keeps up to 1 MiB per CPU of it in per-CPU reserves
 * (sk_memory_allocated_add()), so the shared counter lags and can even read
 * below zero.
 */
static __always_inline int tcp_mem_full(struct sk_msg_md *msg,
					struct bpf_sock *sk,
					const struct bypass_config *cfg)
{
	unsigned long pressure = 0, *flag;
	struct proto *prot;
	struct sock *s;
	long pages;

	if (bpf_cast_to_kern_ctx) {
		struct sk_msg *kmsg = bpf_cast_to_kern_ctx(msg);

		s = kmsg->sk;
	} else {
		/*
		 * Linux 6.1: the same socket through a helper that returns
		 * a pointer we may read through.  struct tcp_sock begins
		 * with struct sock, so the cast is the kernel's own.
		 */
		s = (struct sock *)bpf_skc_to_tcp_sock(sk);
	}
	if (!s)
		return 0;
	/* Reading through a NULL kernel pointer here gives 0, not a fault. */
	prot = s->__sk_common.skc_prot;
	pages = prot->memory_allocated->counter;
	if (pages > 0 && (__u64)pages << cfg->page_shift >= cfg->max_tcp_mem)
		return 1;
	/*
	 * The verifier follows kernel pointers only to structs: a pointer
	 * to an unsigned long loads as a plain number, so we read through
	 * it with bpf_probe_read_kernel() (CAP_PERFMON, as below).
	 */
	flag = prot->memory_pressure;
	if (flag)
		bpf_probe_read_kernel(&pressure, sizeof(pressure), flag);
	return pressure != 0;
}

/*
 * Bytes the peer chosen by bpf_msg_redirect_hash() holds unread.
 *
 * bpf_tcp_ingress() adds every redirected byte to the receiver's
 * sk_rmem_alloc and sk_msg_recvmsg() takes it off when it is read, as TCP
 * does for its own receive queue (so this counts both).  That accounting came
 * with "tcp_bpf: Charge receive socket buffer in bpf_tcp_ingress()", Linux
 * 6.13, and stable 6.12.8 and 6.1.123; on older kernels it reads 0 and the
 * queue bound never triggers (load.sh warns).
 */
static __always_inline __u64 peer_unread(struct sk_msg_md *msg)
{
	struct sock *peer;
	int unread = 0;

	if (bpf_cast_to_kern_ctx) {
		struct sk_msg *kmsg = bpf_cast_to_kern_ctx(msg);

		peer = kmsg->sk_redir;
		if (!peer)
			return 0;
		unread = peer->sk_backlog.rmem_alloc.counter;
	} else {
		/*
		 * Linux 6.1 has no kfunc to reach the kernel's struct sk_msg,
		 * but our context pointer is its address: sk_msg programs
		 * run on it (sk_psock_msg_verdict()).  Reading kernel memory
		 * at a context address is a pointer leak the verifier only
		 * allows to CAP_PERFMON (load.sh runs as root), and only
		 * through bpf_probe_read_kernel(), whose source it does not
		 * type.
		 */
		struct sk_msg *kmsg = (void *)msg;

		if (bpf_probe_read_kernel(&peer, sizeof(peer), &kmsg->sk_redir) ||
		    !peer)
			return 0;
		bpf_probe_read_kernel(&unread, sizeof(unread),
				      &peer->sk_backlog.rmem_alloc.counter);
	}
	return unread > 0 ? unread : 0;
}

/*
 * What the peer would hold once this message is queued, in bytes of kernel
 * memory.
 *
 * Each queued message also costs MSG_OVERHEAD of kernel memory that no
 * counter shows, so 2,000,000 one-byte writes pin 2 GB, not 2 MB.  The
 * kernel does not count queued messages either; we assume they are the size
 * of this one.  A sender of small messages is then judged by its small
 * messages, and one that mixes sizes is held back no later than one that
 * sent only this size: to get many small messages queued, it must send them.
 */
static __always_inline __u64 queue_cost(__u64 unread, __u32 size)
{
	__u64 bytes = unread + size;

	if (!size)
		size = 1;
	return bytes + bytes / size * MSG_OVERHEAD;
}

static __always_inline void latch(struct peer_info *peer, __u32 why,
				  struct bypass_stats *st)
{
	/*
	 * The program runs under the sender's socket lock, so these plain
	 * stores race with nothing.  What we queued on the peer stays there
	 * until it is read, and in the host's backlog until we close (see
	 * struct backlog), unless the peer is gone: its queue went with it.
	 */
	peer->use_tcp = why;
	if (why == LATCH_NO_PEER)
		backlog_release(peer);
	if (!st)
		return;
	switch (why) {
	case LATCH_NO_PEER:
		st->fallback_no_peer++;
		break;
	case LATCH_QUEUE:
		st->fallback_queue++;
		break;
	case LATCH_TCP_MEM:
		st->fallback_tcp_mem++;
		break;
	default:
		st->fallback_backlog++;
		break;
	}
}

/*
 * The verdict, on a message bpf_msg_redirect_hash() has already aimed at the
 * peer: LATCH_NONE to let it go, else the reason to latch.  Updates our share
 * of the host's backlog.
 */
static __always_inline __u32 check_bounds(struct sk_msg_md *msg,
					  struct bpf_sock *sk, __u32 size,
					  const struct bypass_config *cfg,
					  struct peer_info *peer)
{
	__u64 cost, units, total;

	if (cfg->max_tcp_mem && tcp_mem_full(msg, sk, cfg))
		return LATCH_TCP_MEM;
	cost = queue_cost(peer_unread(msg), size);
	if (cfg->max_queue && cost > cfg->max_queue)
		return LATCH_QUEUE;
	units = cost >> BACKLOG_SHIFT;
	if (units == peer->charged)
		return LATCH_NONE;
	total = backlog_add((__s64)(units - peer->charged));
	peer->charged = units;
	if (cfg->max_tcp_mem && total << BACKLOG_SHIFT >= cfg->max_tcp_mem)
		return LATCH_BACKLOG;
	return LATCH_NONE;
}

SEC("sk_msg")
int bpf_redir(struct sk_msg_md *msg)
{
	struct bpf_sock *sk = CTX_READ(msg->sk);
	__u32 size = CTX_READ(msg->size);
	struct bypass_stats *st = stats_this_cpu();
	__u32 zero = CONFIG_KEY, why;
	struct bypass_config *cfg;
	struct peer_info *peer;
	struct sock_key self;

	peer = bpf_sk_storage_get(&peer_keys, sk, 0, 0);
	if (!peer || peer->use_tcp)
		goto tcp;
	/*
	 * On a hit bpf_msg_redirect_hash() returns SK_PASS and marks the
	 * message for the peer's ingress queue.  On a miss it returns SK_DROP,
	 * and returning that would fail the sender's send() with EACCES: a
	 * socket whose peer is not in the map (not established yet, in another
	 * cgroup, or on another host) must simply use TCP.  So we always
	 * return SK_PASS.
	 */
	if (bpf_msg_redirect_hash(msg, &sock_ops_map, &peer->key,
				  BPF_F_INGRESS) != SK_PASS) {
		latch(peer, LATCH_NO_PEER, st);
		goto tcp;
	}
	cfg = bpf_map_lookup_elem(&config, &zero);
	why = cfg ? check_bounds(msg, sk, size, cfg, peer) : LATCH_NONE;
	if (why != LATCH_NONE) {
		/*
		 * The message is aimed at the peer already, and SK_PASS now
		 * means "redirect" (sk_psock_map_verd()).  Aim it at our own
		 * socket's egress instead, without BPF_F_INGRESS:
		 * tcp_bpf_sendmsg_redir() then pushes it out on our own TCP
		 * connection, as SK_PASS with no redirect would.  It arrives
		 * after every byte already queued on the peer (see the latch).
		 */
		mirror_key(&peer->key, &self);
		bpf_msg_redirect_hash(msg, &sock_ops_map, &self, 0);
		latch(peer, why, st);
		goto tcp;
	}
	if (st) {
		st->msgs_redirected++;
		st->bytes_redirected += size;
	}
	/*
	 * One verdict per sendmsg(), on purpose.  Two helpers could make
	 * small writes cheaper, and neither is used:
	 *
	 * - bpf_msg_cork_bytes(msg, n) makes the kernel hold this socket's
	 *   data until n bytes have piled up (tcp_bpf_send_verdict() parks
	 *   them in psock->cork).  Nothing flushes them on a timer, so an
	 *   application that sends a 64-byte request and waits for the reply
	 *   waits forever.  Batching is only safe where the protocol
	 *   guarantees more data, which this program cannot know.
	 * - bpf_msg_apply_bytes(msg, n) keeps this verdict, and the reference
	 *   on the peer, for the next n bytes without running the program.
	 *   That saves the program (about 250 ns of the ~6 us a redirected
	 *   64-byte write costs; the rest is locking the peer, waking its
	 *   reader and one sk_msg per write in bpf_tcp_ingress()), but the
	 *   counters would then see one message per n bytes, and the bounds
	 *   above would be checked once per n bytes.
	 *
	 * docs/performance.md has the measurements.
	 */
	return SK_PASS;
tcp:
	if (st) {
		st->msgs_passed++;
		st->bytes_passed += size;
	}
	return SK_PASS;
}

char _license[] SEC("license") = "GPL";
