// SPDX-License-Identifier: GPL-2.0
/*
 * bpf_redir.c - send each message straight into the peer's receive queue
 * while the peer keeps up, by TCP while it does not.
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
 * the bypass and TCP are two paths of one connection, and TCP's is the one
 * with flow control:
 *
 * - On the bypass, before each redirect, we look at what the peer holds
 *   unread (against a bound of ours, or its SO_RCVBUF if it set a smaller
 *   one) and at the host's TCP memory.  When either is over its bound
 *   the connection falls back to TCP (struct peer_info's fallback), whose
 *   buffers then hold the sender back as they would without the bypass.
 * - On TCP, each message goes by TCP with SK_PASS, pushed under the socket
 *   lock, until the reason has passed and the reader has read every byte
 *   that went by TCP; then the next message goes by the bypass again.
 *
 * This runs on every send, so the bypass path does the least it can: one
 * storage lookup, the redirect, a few loads from kernel memory, one per-CPU
 * counter update.  The way back reads more, but only once our TCP bytes
 * have all been acknowledged.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include "bpf_sockops.h"
#include "bpf_maps.h"

/* From the kernel's include/net/tcp_states.h and include/net/sock.h. */
#define TCP_ESTABLISHED	1
#define SEND_SHUTDOWN	2
#define SOCK_RCVBUF_LOCK	2	/* sk_userlocks: SO_RCVBUF was set */
/* Waiters on the peer's wait queue looked at, at most. */
#define MAX_WAITERS	8

/*
 * The kernel structures we read, reduced to the fields we read, as the
 * kernel selftests' bpf_tracing_net.h does.  preserve_access_index makes
 * clang record every access as a CO-RE relocation, which libbpf rewrites to
 * the running kernel's offsets from its BTF at load time: one object fits
 * every kernel, with no vmlinux.h.  A "___bypass" suffix is ignored in the
 * match; it keeps a name of ours apart from a type of the system headers.
 */
typedef struct {
	long counter;
} atomic_long_t___bypass;

struct list_head___bypass {
	struct list_head___bypass *next;
} __attribute__((preserve_access_index));

struct proto {
	atomic_long_t___bypass *memory_allocated;	/* pages, all TCP sockets */
	unsigned long *memory_pressure;	/* &tcp_memory_pressure */
} __attribute__((preserve_access_index));

struct wait_queue_head {
	struct list_head___bypass head;
} __attribute__((preserve_access_index));

struct wait_queue_entry {
	void *func;
	struct list_head___bypass entry;
} __attribute__((preserve_access_index));

struct socket_wq {
	struct wait_queue_head wait;
} __attribute__((preserve_access_index));

struct sock_common {
	unsigned char skc_state;
	struct proto *skc_prot;
} __attribute__((preserve_access_index));

struct sock {
	struct sock_common __sk_common;
	struct {
		int owned;
		struct wait_queue_head wq;
	} sk_lock;			/* socket_lock_t */
	struct {
		struct {
			int counter;
		} rmem_alloc;		/* atomic_t sk_rmem_alloc */
	} sk_backlog;
	int sk_rcvlowat;
	struct socket_wq *sk_wq;
	unsigned char sk_shutdown;
	/*
	 * A 4-bit field in 6.1, a u8 of its own in 6.12 and 6.18 (struct
	 * sock regrouped by cache line).  Declared as the bitfield, and read
	 * only with BPF_CORE_READ_BITFIELD*(): libbpf gives the byte that
	 * holds it and the shifts for this kernel, whichever it is.
	 */
	__u8 sk_userlocks:4;
	int sk_rcvbuf;
} __attribute__((preserve_access_index));

struct tcp_sock {
	__u32 copied_seq;	/* the reader read every byte before this */
	__u32 snd_una;		/* the first byte not acknowledged */
	__u32 write_seq;	/* the byte after the last one queued to send */
	__u16 urg_data;		/* urgent data pending */
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

/* Sequence numbers wrap: true if a comes before b (include/net/tcp.h). */
static __always_inline int seq_before(__u32 a, __u32 b)
{
	return (__s32)(a - b) < 0;
}

/*
 * Our own socket as a struct sock the verifier lets us read through: the
 * context's socket on 6.2+, else the same socket through a helper that
 * returns such a pointer (struct tcp_sock begins with struct sock, so the
 * cast is the kernel's own).
 */
static __always_inline struct sock *our_sock(struct sk_msg_md *msg,
					     struct bpf_sock *sk)
{
	if (bpf_cast_to_kern_ctx) {
		struct sk_msg *kmsg = bpf_cast_to_kern_ctx(msg);

		return kmsg->sk;
	}
	return (struct sock *)bpf_skc_to_tcp_sock(sk);
}

/*
 * Our own socket as a struct tcp_sock, for its sequence numbers: the
 * verifier checks each load against the type the pointer came with, and
 * the context's socket is a struct sock.  Only on the rarer paths.
 */
static __always_inline struct tcp_sock *our_tcp_sock(struct bpf_sock *sk)
{
	return (struct tcp_sock *)bpf_skc_to_tcp_sock(sk);
}

/*
 * The address of the socket bpf_msg_redirect_hash() aimed the message at,
 * as a number: 0 if none.  On 6.1 there is no kfunc to reach the kernel's
 * struct sk_msg, but our context pointer is its address: sk_msg programs
 * run on it (sk_psock_msg_verdict()).  Reading kernel memory at a context
 * address is a pointer leak the verifier only allows to CAP_PERFMON
 * (load.sh runs as root), and only through bpf_probe_read_kernel(), whose
 * source it does not type.  Keeping an address in a map value is such a
 * leak too.
 */
static __always_inline __u64 aimed_peer(struct sk_msg_md *msg)
{
	struct sock *peer = 0;

	if (bpf_cast_to_kern_ctx) {
		struct sk_msg *kmsg = bpf_cast_to_kern_ctx(msg);

		return (__u64)kmsg->sk_redir;
	}
	bpf_probe_read_kernel(&peer, sizeof(peer),
			      &((struct sk_msg *)(void *)msg)->sk_redir);
	return (__u64)peer;
}

/*
 * Whether the host's TCP memory rules out a redirect now: all TCP sockets
 * hold limit bytes, or TCP is under memory pressure.
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
static __always_inline int tcp_mem_full(struct sock *s, __u64 limit,
					const struct bypass_config *cfg)
{
	unsigned long pressure = 0, *flag;
	struct proto *prot;
	long pages;

	if (!s)
		return 0;
	/* Reading through a NULL kernel pointer here gives 0, not a fault. */
	prot = s->__sk_common.skc_prot;
	pages = prot->memory_allocated->counter;
	if (pages > 0 && (__u64)pages << cfg->page_shift >= limit)
		return 1;
	/*
	 * The verifier follows kernel pointers only to structs: a pointer
	 * to an unsigned long loads as a plain number, so we read through
	 * it with bpf_probe_read_kernel() (CAP_PERFMON, as above).
	 */
	flag = prot->memory_pressure;
	if (flag)
		bpf_probe_read_kernel(&pressure, sizeof(pressure), flag);
	return pressure != 0;
}

/*
 * The peer's receive buffer if its application fixed it (SO_RCVBUF, on
 * the socket or on the listener it was accepted from), else 0: the bytes
 * TCP would let it hold unread.  setsockopt() sets SOCK_RCVBUF_LOCK in
 * sk_userlocks and sk_rcvbuf to twice the size asked, at least
 * SOCK_MIN_RCVBUF (sk_setsockopt()); TCP counts its receive queue against
 * that, with each skb's overhead, as queue_cost() counts ours.  Without
 * the lock TCP autotunes its buffer, and the bypass its bound
 * (queue_bound()).
 *
 * Read at every send, so an option set after the handshake counts from the
 * next message, and only while the queue bound is on.  Cost: one load, and
 * a second only when the lock is set (on 6.1, a probe read each).
 *
 * Two readers, the same fields: rcvbuf_btf() through a pointer the
 * verifier types (6.2+), rcvbuf_probed() through an address it does not
 * (6.1, and the way back).  BPF_CORE_READ_BITFIELD() loads the byte that
 * holds sk_userlocks straight through the typed pointer: the verifier lets
 * a load cover a whole bitfield (btf_struct_walk()), and of the macro's
 * switch on the relocated size it walks only the one case libbpf made
 * constant.  Each field goes into a local of its own before it is tested.
 */
static __always_inline __u64 rcvbuf_btf(struct sock *peer)
{
	__u64 locks = BPF_CORE_READ_BITFIELD(peer, sk_userlocks);
	int rcvbuf;

	if (!(locks & SOCK_RCVBUF_LOCK))
		return 0;
	rcvbuf = peer->sk_rcvbuf;
	return rcvbuf > 0 ? rcvbuf : 0;
}

static __always_inline __u64 rcvbuf_probed(struct sock *peer)
{
	__u64 locks = BPF_CORE_READ_BITFIELD_PROBED(peer, sk_userlocks);
	int rcvbuf = 0;

	if (!(locks & SOCK_RCVBUF_LOCK))
		return 0;
	bpf_core_read(&rcvbuf, sizeof(rcvbuf), &peer->sk_rcvbuf);
	return rcvbuf > 0 ? rcvbuf : 0;
}

/*
 * Bytes the peer chosen by bpf_msg_redirect_hash() holds unread, and in
 * *rcvbuf its fixed receive buffer (rcvbuf_btf()) if want_rcvbuf, else 0.
 *
 * bpf_tcp_ingress() adds every redirected byte to the receiver's
 * sk_rmem_alloc and sk_msg_recvmsg() takes it off when it is read, as TCP
 * does for its own receive queue (so this counts both).  That accounting came
 * with "tcp_bpf: Charge receive socket buffer in bpf_tcp_ingress()", Linux
 * 6.13, and stable 6.12.8 and 6.1.123; on older kernels it reads 0 and the
 * queue bound never triggers (load.sh warns).
 */
static __always_inline __u64 peer_unread(struct sk_msg_md *msg, int want_rcvbuf,
					 __u64 *rcvbuf)
{
	struct sock *peer;
	int unread = 0;

	*rcvbuf = 0;
	if (bpf_cast_to_kern_ctx) {
		struct sk_msg *kmsg = bpf_cast_to_kern_ctx(msg);

		peer = kmsg->sk_redir;
		if (!peer)
			return 0;
		unread = peer->sk_backlog.rmem_alloc.counter;
		if (want_rcvbuf)
			*rcvbuf = rcvbuf_btf(peer);
	} else {
		peer = (struct sock *)aimed_peer(msg);
		if (!peer)
			return 0;
		bpf_probe_read_kernel(&unread, sizeof(unread),
				      &peer->sk_backlog.rmem_alloc.counter);
		if (want_rcvbuf)
			*rcvbuf = rcvbuf_probed(peer);
	}
	return unread > 0 ? unread : 0;
}

/* The queue bound, at most a fixed receive buffer (0: none). */
static __always_inline __u64 cap_bound(__u64 bound, __u64 rcvbuf)
{
	return rcvbuf && rcvbuf < bound ? rcvbuf : bound;
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

/*
 * The connection's queue bound, earned by its reader as TCP's receive buffer
 * is (tcp_rcv_space_adjust() grows it with what the application reads, up
 * to tcp_rmem[2]): it starts at queue_start and grows to twice what the
 * peer has read of ours, up to max_queue, and never shrinks.  A reader that
 * never reads holds its sender to queue_start (then TCP's own buffers); one
 * that reads fast may fall up to max_queue behind before its sender detours
 * by TCP.  With --max-queue given, both are that size: a fixed bound, as
 * SO_RCVBUF fixes TCP's.
 *
 * What the peer has read is what we redirected to it less what it holds
 * unread: while we redirect, everything it holds is ours (it read every TCP
 * byte before we came back), and sk_rmem_alloc counts payload bytes, as
 * sent does.  On a kernel that does not count redirected bytes unread reads
 * 0 and the bound grows as we send; it never triggers there anyway.
 *
 * A peer whose application fixed its receive buffer (SO_RCVBUF) asked for
 * TCP's flow control at that size: callers cap this bound at it
 * (cap_bound()), at each send, without storing it here: the bound earned
 * stays, and a later SO_RCVBUF, smaller or larger, counts from the next
 * send.
 */
static __always_inline __u64 queue_bound(const struct bypass_config *cfg,
					 struct peer_info *peer, __u64 unread)
{
	__u64 grown;

	if (peer->bound < cfg->max_queue) {
		grown = peer->sent > unread ? 2 * (peer->sent - unread) : 0;
		if (grown > peer->bound)
			peer->bound = grown < cfg->max_queue ? grown : cfg->max_queue;
	}
	return peer->bound > cfg->queue_start ? peer->bound : cfg->queue_start;
}

/*
 * The verdict, on a message bpf_msg_redirect_hash() has already aimed at the
 * peer: FALLBACK_NONE to let it go, else the reason to go by TCP.  Updates
 * our share of the host's backlog.  rcvbuf is the peer's fixed receive
 * buffer, 0 if none (peer_unread()).
 */
static __always_inline __u32 check_bounds(struct sock *me, __u64 unread,
					  __u64 rcvbuf, __u32 size,
					  const struct bypass_config *cfg,
					  struct peer_info *peer)
{
	__u64 cost, units, total;

	if (cfg->max_tcp_mem && tcp_mem_full(me, cfg->max_tcp_mem, cfg))
		return FALLBACK_TCP_MEM;
	cost = queue_cost(unread, size);
	if (cfg->max_queue &&
	    cost > cap_bound(queue_bound(cfg, peer, unread), rcvbuf))
		return FALLBACK_QUEUE;
	units = cost >> BACKLOG_SHIFT;
	if (units == peer->charged)
		return FALLBACK_NONE;
	total = backlog_add((__s64)(units - peer->charged));
	peer->charged = units;
	if (cfg->max_tcp_mem && total << BACKLOG_SHIFT >= cfg->max_tcp_mem)
		return FALLBACK_BACKLOG;
	return FALLBACK_NONE;
}

/*
 * Whether the host has room again for a connection on TCP to come back:
 * TCP's memory and the backlog (without our own share, which we give back
 * when we come back) under three quarters of the guard, and no pressure.
 * The quarter keeps connections from flapping at the guard.
 */
static __always_inline int host_has_room(struct sock *me,
					 const struct bypass_config *cfg,
					 const struct peer_info *peer)
{
	__u64 low = cfg->max_tcp_mem - cfg->max_tcp_mem / 4, units;

	if (!cfg->max_tcp_mem)
		return 1;
	if (tcp_mem_full(me, low, cfg))
		return 0;
	units = backlog_add(0);
	units = units > peer->charged ? units - peer->charged : 0;
	return units << BACKLOG_SHIFT < low;
}

/* Read one field of a kernel structure at an address we only know as a number. */
#define PEEK(dst, ptr, field) \
	bpf_core_read(&(dst), sizeof(dst), &(ptr)->field)

enum ready {
	READY,		/* come back now */
	NOT_NOW,	/* stay on TCP for this message */
	NEVER,		/* stay on TCP until the connection closes */
};

/* Words of a sleeper's stack below its wait entry that sleeper() reads. */
#define STACK_WORDS	16

/*
 * 1 if a < b (unsigned), else 0, computed without a branch: the borrow out
 * of a - b.  The functions below count and classify waiters without
 * branches on purpose: the verifier follows both sides of every branch,
 * and over 8 waiters x 16 words x 4 functions the combinations exceed its
 * limit of a million instructions.
 */
static __always_inline __u64 below(__u64 a, __u64 b)
{
	return ((~a & b) | ((~a | b) & (a - b))) >> 63;
}

/* 1 if the word lies in the text of wait function f, else 0. */
static __always_inline __u64 in_text(__u64 word, const struct bypass_config *cfg,
				     int f)
{
	__u64 start = cfg->waits[f].start;

	return below(word - start, cfg->waits[f].end - start);
}

/*
 * What a task on the peer's wait queue is, from its wait entry w: adds 1
 * to *readers if it is a reader asleep in recv(), and 1 to *unsafe if that
 * reader may be inside tcp_recvmsg().
 *
 * Blocking socket waits sleep with woken_wake_function; poll(), select()
 * and epoll queue other functions, and read through tcp_bpf_recvmsg() when
 * they wake (neither a reader here nor unsafe).  Of the three that matter,
 * only one is unsafe, and no flag tells which: SOCKWQ_ASYNC_WAITDATA is set
 * only on sockets with O_ASYNC, and the psock reference tcp_bpf_recvmsg()
 * holds is held by the socket's writers too while they redirect.  So we
 * look at where each one sleeps.  The wait entry is a local variable of
 * the function that sleeps, which called wait_woken() (sk_wait_event())
 * from a few words below it: the return address into it is on the stack
 * right under the entry.  We read STACK_WORDS words there and look for an
 * address in the text of the functions load.sh found in /proc/kallsyms:
 *
 * - sk_wait_data(): a reader inside tcp_recvmsg() (or splice()), unsafe;
 * - tcp_msg_wait_data(), or tcp_bpf_recvmsg() where it is inlined: a
 *   reader in tcp_bpf_recvmsg(), which waits for either queue, safe;
 * - sk_stream_wait_memory(): a writer waiting for memory, safe.
 *
 * A word in sk_wait_data() decides, wherever it is (a stale word can only
 * make a reader look unsafe, the cautious way); a waiter where none is
 * found counts as an unsafe reader.  The task is asleep, so its stack holds
 * still; if it wakes meanwhile the read is only stale, and a probe read
 * never faults.
 */
static __always_inline void sleeper(void *w, const struct bypass_config *cfg,
				    int *readers, int *unsafe)
{
	__u64 stack[STACK_WORDS], hit[WAIT_FUNCS] = {}, known, waits, tcp, bpf, send;
	void *func = 0;
	int i;

	PEEK(func, (struct wait_queue_entry *)w, func);
	if (bpf_probe_read_kernel(stack, sizeof(stack), w - sizeof(stack)))
		__builtin_memset(stack, 0, sizeof(stack));
	for (i = 0; i < STACK_WORDS; i++) {
		hit[WAIT_TCP_RECV] |= in_text(stack[i], cfg, WAIT_TCP_RECV);
		hit[WAIT_BPF_RECV] |= in_text(stack[i], cfg, WAIT_BPF_RECV);
		hit[WAIT_BPF_RECVMSG] |= in_text(stack[i], cfg, WAIT_BPF_RECVMSG);
		hit[WAIT_SEND] |= in_text(stack[i], cfg, WAIT_SEND);
	}
	/* 0 or 1 each, combined with bit operations only (see below()). */
	known = below(0, cfg->woken_wake);
	waits = below((__u64)func ^ cfg->woken_wake, 1);
	tcp = hit[WAIT_TCP_RECV];
	bpf = (hit[WAIT_BPF_RECV] | hit[WAIT_BPF_RECVMSG]) & (tcp ^ 1);
	send = hit[WAIT_SEND] & (tcp ^ 1) & (bpf ^ 1);
	*readers += known & waits & (send ^ 1);
	/*
	 * Without kallsyms nothing tells a blocking wait from poll()'s: then
	 * every waiter is unsafe, and none counts as a reader.
	 */
	*unsafe += (known ^ 1) | (waits & (send ^ 1) & (bpf ^ 1));
}

/*
 * Readers of the peer asleep in a blocking recv(): how many (-1 if more
 * waiters than we look at), and in *unsafe how many of them may be inside
 * tcp_recvmsg().
 *
 * A reader inside tcp_recvmsg() that has not got what it asked for (the
 * rest of a MSG_WAITALL count, a low-water mark, or anything at all, for a
 * second thread that found the bytes taken) sleeps in sk_wait_data(), which
 * wakes it only when sk_receive_queue grows.  Bytes redirected into the
 * psock queue wake it, but it goes back to sleep: after we come back, it
 * would sleep until the next TCP byte, and a later fallback's TCP bytes
 * would then be read before the redirected ones.  Those are the readers
 * that make coming back unsafe (sleeper() finds them).
 */
static __always_inline int recv_sleepers(__u64 p, const struct bypass_config *cfg,
					 int *unsafe)
{
	struct sock *peer = (struct sock *)p;
	struct list_head___bypass *head, *pos = 0;
	struct socket_wq *wq = 0;
	int i, readers = 0;

	*unsafe = 0;
	PEEK(wq, peer, sk_wq);
	if (!wq)
		return 0;	/* not accepted yet: no reader at all */
	head = &wq->wait.head;
	PEEK(pos, head, next);
	for (i = 0; i < MAX_WAITERS && pos && pos != head; i++) {
		sleeper((void *)pos - bpf_core_field_offset(struct wait_queue_entry, entry),
			cfg, &readers, unsafe);
		PEEK(pos, pos, next);
	}
	return pos == head ? readers : -1;
}

/*
 * Whether the peer, at address p, is ready for the bypass again: it has
 * read every byte we sent by TCP, and no reader of it could miss redirected
 * bytes.  Reads through bpf_probe_read_kernel(), on every kernel: this runs
 * only when a connection on TCP tries to come back, and p is a number the
 * verifier does not type.  p may be stale (the peer closed): TCP sockets'
 * memory stays a TCP socket's for an RCU grace period, and a probe read
 * never faults, so the worst is a wrong answer, which the redirect that
 * follows then corrects (it finds no peer in the map).
 */
static __always_inline enum ready peer_ready(__u64 p, __u32 write_seq,
					     const struct bypass_config *cfg,
					     __u64 bound)
{
	struct tcp_sock *tp = (struct tcp_sock *)p;
	struct sock *peer = (struct sock *)p;
	unsigned char state = 0, shutdown = 1;
	__u32 copied = 0;
	__u16 urg = 1;
	int lowat = 2, owned = 1, unread = 0, readers, unsafe;
	void *lock_waiter = 0;

	/*
	 * Either side's shutdown(), or a peer that is closing: TCP's answer
	 * from now on, whatever comes.
	 */
	PEEK(state, peer, __sk_common.skc_state);
	PEEK(shutdown, peer, sk_shutdown);
	if (state != TCP_ESTABLISHED || shutdown)
		return NEVER;
	/*
	 * The test for "drained": the peer's copied_seq, the first byte its
	 * reader has not read, is our write_seq, the byte after the last one
	 * we queued for TCP.  They are the same sequence space (both started
	 * at our initial sequence number + 1), and copied_seq only grows, so
	 * a stale read can only say "not yet".  The peer's rcv_nxt would not
	 * do: it says the bytes arrived, not that they were read.
	 */
	PEEK(copied, tp, copied_seq);
	if (copied != write_seq)
		return NOT_NOW;
	/*
	 * Urgent data pending, or a low-water mark (which the bypass cannot
	 * honour: docs/semantics.md): not while they last.
	 */
	PEEK(urg, tp, urg_data);
	PEEK(lowat, peer, sk_rcvlowat);
	if (urg || lowat > 1)
		return NOT_NOW;
	/*
	 * Hysteresis: only well under the bound (drained, it holds none of
	 * ours), capped as the send that fell back capped it: a quarter of
	 * the larger bound could be more than the buffer the peer fixed.
	 */
	if (cfg->max_queue) {
		PEEK(unread, peer, sk_backlog.rmem_alloc.counter);
		bound = cap_bound(bound, rcvbuf_probed(peer));
		if ((__u64)(unread > 0 ? unread : 0) >= bound / 4)
			return NOT_NOW;
	}
	/*
	 * No reader inside tcp_recvmsg(): it holds the socket lock while it
	 * runs (owned), waits on sk_lock.wq for it, and sleeps on the wait
	 * queue (recv_sleepers()).  A reader always shows as one of the
	 * three, from its lock_sock() to its last release_sock().
	 */
	PEEK(owned, peer, sk_lock.owned);
	PEEK(lock_waiter, peer, sk_lock.wq.head.next);
	if (owned || lock_waiter != &peer->sk_lock.wq.head)
		return NOT_NOW;
	readers = recv_sleepers(p, cfg, &unsafe);
	/*
	 * Two tasks asleep in recv() at once: two readers.  A second reader
	 * can be on its way into tcp_recvmsg() unseen, woken from the socket
	 * lock's queue but not yet running; coming back then leaves it asleep
	 * in sk_wait_data().  That connection stays on TCP.
	 */
	if (readers >= 2)
		return NEVER;
	return readers < 0 || unsafe ? NOT_NOW : READY;
}

/*
 * Whether the peer's key is in no collision (bpf_sockops.c,
 * mark_collision()): asked before the first message goes to the peer, and
 * true for the rest of the connection.  The socket under the key cannot
 * change while it lives (never replaced: BPF_NOEXIST), and once it is gone
 * the connection is on TCP for good.  A key two sockets claimed is the
 * peer of no one: we go by TCP for good, and so does the other end, which
 * looks up our key, recorded with it.
 */
static __always_inline int peer_unique(struct peer_info *peer)
{
	if (peer->flags & PEER_CHECKED)
		return 1;
	if (bpf_map_lookup_elem(&collided, &peer->key)) {
		peer->flags |= PEER_FOR_GOOD;
		return 0;
	}
	peer->flags |= PEER_CHECKED;
	return 1;
}

/* Count a path change, and keep the state it leaves. */
static __always_inline void fall_back(struct peer_info *peer, __u32 why,
				      struct bypass_stats *st)
{
	/*
	 * The program runs under the sender's socket lock, so these plain
	 * stores race with nothing.  What we queued on the peer stays there
	 * until it is read, and in the host's backlog until we come back or
	 * close (see struct backlog), unless the peer is gone: its queue went
	 * with it.
	 */
	peer->fallback = why;
	if (why == FALLBACK_NO_PEER)
		backlog_release(peer);
	if (!st)
		return;
	switch (why) {
	case FALLBACK_NO_PEER:
		st->fallback_no_peer++;
		break;
	case FALLBACK_QUEUE:
		st->fallback_queue++;
		break;
	case FALLBACK_TCP_MEM:
		st->fallback_tcp_mem++;
		break;
	case FALLBACK_OPTION:
		st->fallback_option++;
		break;
	default:
		st->fallback_backlog++;
		break;
	}
}

static __always_inline void come_back(struct peer_info *peer,
				      struct bypass_stats *st)
{
	__u32 why = peer->fallback;

	/* Drained: the peer holds nothing of ours any more. */
	peer->fallback = FALLBACK_NONE;
	backlog_release(peer);
	if (!st)
		return;
	switch (why) {
	case FALLBACK_NO_PEER:
		st->return_no_peer++;
		break;
	case FALLBACK_QUEUE:
		st->return_queue++;
		break;
	case FALLBACK_TCP_MEM:
		st->return_tcp_mem++;
		break;
	default:
		st->return_backlog++;
		break;
	}
}

/*
 * Whether the peer has set an option that the bypass cannot honour since
 * the connection was established (bpf_sockopt.c): then this message and
 * every later one go by TCP, for good (PEER_FOR_GOOD: the way back never
 * looks).  Nothing is aimed yet, so SK_PASS sends it by TCP as it is.
 *
 * While no socket on the host has set one, the gate is shut and this costs
 * one array lookup, which the verifier inlines, and one load.  Once it is
 * open, every send looks its peer's key up in opt_socks, one hash lookup.
 * A connection already on TCP for another reason keeps that reason in its
 * counters; it only loses its way back.
 */
static __always_inline int peer_set_option(struct peer_info *peer,
					   struct bypass_stats *st)
{
	struct opt_gate *gate;
	__u32 zero = 0;

	gate = bpf_map_lookup_elem(&opt_gate, &zero);
	if (!gate || !*(volatile __u64 *)&gate->sockets)
		return 0;
	if (!bpf_map_lookup_elem(&opt_socks, &peer->key))
		return 0;
	peer->flags |= PEER_FOR_GOOD;
	if (peer->fallback == FALLBACK_NONE)
		fall_back(peer, FALLBACK_OPTION, st);
	return 1;
}

/*
 * Send a message that bpf_msg_redirect_hash() already aimed at the peer by
 * TCP instead.  SK_PASS now means "redirect" (sk_psock_map_verd()), and
 * nothing un-aims a message, so we aim it at our own socket's egress,
 * without BPF_F_INGRESS: tcp_bpf_sendmsg_redir() then pushes it out on our
 * own TCP connection.  It does so after releasing our socket lock
 * (tcp_bpf_send_verdict()), so another thread's send could run meanwhile
 * and see our write_seq without these bytes: PEER_EGRESS and egress_end
 * keep the way back closed until they are pushed.  Only the message that
 * finds a bound crossed takes this path; while on TCP, messages are never
 * aimed until the peer is ready.
 */
static __always_inline void aim_at_egress(struct sk_msg_md *msg,
					  struct bpf_sock *sk, __u32 size,
					  struct peer_info *peer)
{
	struct tcp_sock *tp = our_tcp_sock(sk);
	struct sock_key self;

	if (tp) {
		peer->egress_end = tp->write_seq + size;
		peer->flags |= PEER_EGRESS;
	}
	mirror_key(&peer->key, &self);
	bpf_msg_redirect_hash(msg, &sock_ops_map, &self, 0);
}

/*
 * A message of a connection on TCP: SK_PASS, unless the connection can come
 * back to the bypass now, in which case the message is redirected.  Returns
 * 1 if it was.
 *
 * First what our own socket says, which costs a few loads: not shut down;
 * no message of ours waiting to be pushed to our egress; every byte we sent
 * by TCP acknowledged (snd_una == write_seq), which the reader's having
 * read them implies once the ACK is in; and, for any reason, room on the
 * host.  Only then the peer, through the address kept from an earlier aim
 * (peer_ready()), and only if it is ready is the message aimed at it.  A
 * connection whose peer was never found looks it up NO_PEER_TRIES times,
 * by aiming at it, then no more: its peer is elsewhere.
 */
static __always_inline int try_return(struct sk_msg_md *msg, struct bpf_sock *sk,
				      struct sock *me, __u32 size,
				      const struct bypass_config *cfg,
				      struct peer_info *peer, struct bypass_stats *st)
{
	struct tcp_sock *tp = our_tcp_sock(sk);
	__u32 write_seq, snd_una;
	enum ready ready;
	__u64 p, bound;

	if (!tp)
		return 0;
	write_seq = tp->write_seq;
	if (peer->flags & PEER_EGRESS) {
		if (seq_before(write_seq, peer->egress_end))
			return 0;
		peer->flags &= ~PEER_EGRESS;
	}
	snd_una = tp->snd_una;
	if (snd_una != write_seq || !host_has_room(me, cfg, peer))
		return 0;
	bound = peer->bound > cfg->queue_start ? peer->bound : cfg->queue_start;
	p = peer->peer_sk;
	if (p) {
		ready = peer_ready(p, write_seq, cfg, bound);
		if (ready == NEVER)
			peer->flags |= PEER_FOR_GOOD;
		if (ready != READY)
			return 0;
	} else if (peer->tries) {
		peer->tries--;
	} else {
		peer->flags |= PEER_FOR_GOOD;
		return 0;
	}
	if (bpf_msg_redirect_hash(msg, &sock_ops_map, &peer->key,
				  BPF_F_INGRESS) != SK_PASS) {
		/* Not in the map: not yet, or, if we had found it, gone. */
		if (p)
			peer->flags |= PEER_FOR_GOOD;
		return 0;
	}
	if (!peer_unique(peer)) {
		aim_at_egress(msg, sk, size, peer);
		return 0;
	}
	if (aimed_peer(msg) != p) {
		/*
		 * Found for the first time (a peer that was not in the map at
		 * first): decide on the socket the message is aimed at.
		 */
		p = aimed_peer(msg);
		peer->peer_sk = p;
		ready = peer_ready(p, write_seq, cfg, bound);
		if (ready != READY) {
			if (ready == NEVER)
				peer->flags |= PEER_FOR_GOOD;
			aim_at_egress(msg, sk, size, peer);
			return 0;
		}
	}
	come_back(peer, st);
	return 1;
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
	struct sock *me;
	__u64 unread, rcvbuf;
	int unsafe;

	peer = bpf_sk_storage_get(&peer_keys, sk, 0, 0);
	if (!peer || peer->flags & PEER_FOR_GOOD)
		goto tcp;
	if (peer_set_option(peer, st))
		goto tcp;
	me = our_sock(msg, sk);
	if (!me)
		goto tcp;
	/*
	 * After our shutdown(SHUT_WR), or once the connection is reset or
	 * closed, TCP answers a send with EPIPE.  tcp_bpf_sendmsg() asks
	 * nothing of the kind before it runs us, and a redirect would hand
	 * the bytes to the peer after our FIN.
	 */
	if (me->sk_shutdown & SEND_SHUTDOWN) {
		peer->flags |= PEER_FOR_GOOD;
		goto tcp;
	}
	cfg = bpf_map_lookup_elem(&config, &zero);
	if (!cfg)
		goto tcp;
	if (peer->fallback) {
		if (try_return(msg, sk, me, size, cfg, peer, st))
			goto redirected;
		goto tcp;
	}
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
		/* A peer we had found is gone; one we never found may come. */
		if (peer->peer_sk)
			peer->flags |= PEER_FOR_GOOD;
		fall_back(peer, FALLBACK_NO_PEER, st);
		goto tcp;
	}
	if (!peer_unique(peer)) {
		aim_at_egress(msg, sk, size, peer);
		goto tcp;
	}
	unread = peer_unread(msg, cfg->max_queue != 0, &rcvbuf);
	why = check_bounds(me, unread, rcvbuf, size, cfg, peer);
	if (why != FALLBACK_NONE) {
		/* Kept for the way back: see peer_ready(). */
		peer->peer_sk = aimed_peer(msg);
		if (peer->flags & PEER_READERS)
			peer->flags |= PEER_FOR_GOOD;
		aim_at_egress(msg, sk, size, peer);
		fall_back(peer, why, st);
		goto tcp;
	}
	/*
	 * A peer with nothing unread has readers with nothing to do: if it
	 * has two, they are likely both asleep in recv() now.  Look, on the
	 * first few such messages and one in 64 after: a connection whose
	 * peer has two readers never comes back from a fallback
	 * (peer_ready()).
	 */
	if (!unread && !(peer->flags & PEER_READERS) &&
	    (peer->idle++ < READER_LOOKS || !(peer->idle & 63)) &&
	    recv_sleepers(aimed_peer(msg), cfg, &unsafe) >= 2)
		peer->flags |= PEER_READERS;
redirected:
	peer->sent += size;
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
