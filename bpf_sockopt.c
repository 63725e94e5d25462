// SPDX-License-Identifier: GPL-2.0
/*
 * bpf_sockopt.c - see the options a socket is given after its connection
 * is established, and send its peer's bytes by TCP when the bypass cannot
 * honour them.
 *
 * bpf_sockops leaves out a socket that has SO_RCVLOWAT when it becomes
 * established; sock_ops has no callback for a later setsockopt().  A
 * cgroup/setsockopt program has: it runs on every setsockopt() of a socket
 * in the cgroup, at every level and optname, under the socket lock, before
 * the kernel acts on the option (__cgroup_bpf_run_filter_setsockopt(),
 * 6.1 to 6.18).  It does not see 32-bit compat calls, bpf_setsockopt(), or
 * what an accepted socket inherits from its listener (bpf_sockops sees
 * that at ESTABLISHED).
 *
 * An option about receiving on this socket R (SO_RCVLOWAT, SO_PEEK_OFF,
 * TCP_INQ, SO_TIMESTAMP*: option_bit() says why each) concerns the bytes
 * its peer P sends, so it is P's bpf_redir that must change its path.
 * This program
 * cannot reach P: it has R's local storage, but no helper that takes P
 * from the sockhash (a lookup returns a reference that this program type
 * cannot release).  So R puts its own key in opt_socks and opens the gate
 * (bpf_sockops.h); P's bpf_redir looks its peer's key up there before it
 * redirects, and goes by TCP for good once it is found (FALLBACK_OPTION).
 * Bytes already redirected stay in R's psock queue and are read first, as
 * after any fallback (docs/semantics.md has the window this leaves).
 *
 * The program never refuses or changes an option: it returns 1, "let the
 * kernel go on", always.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <asm/socket.h>		/* SOL_SOCKET, SO_*: per-arch values */
#include "bpf_sockops.h"
#include "bpf_maps.h"

/*
 * The kernel copies at most a page of the option into our buffer.  For a
 * longer one (iptables' rule blobs on raw sockets), optlen 0 tells it to
 * use the caller's own bytes, without the warning it otherwise logs once
 * (the kernel selftests' sockopt_sk.c does the same).
 */
#define OPT_BUF_MAX	4096

#define IPPROTO_TCP	6
#define TCP_INQ		36	/* include/uapi/linux/tcp.h */

/*
 * The OPT_* bit for an option set on a socket, or 0 if the bypass honours
 * it as TCP does (or it is no option of ours).  Each is about receiving:
 * it is the peer's sends that go by TCP.
 *
 * - SO_RCVLOWAT: TCP wakes a reader, and poll() says POLLIN, only once
 *   that many bytes are queued (sock_rcvlowat(), tcp_stream_is_readable());
 *   tcp_bpf_recvmsg() returns as soon as one message is queued, and
 *   sk_msg_is_readable() calls any queued message readable.  A negative
 *   value means INT_MAX, and 0 means 1 (sk_setsockopt(),
 *   tcp_set_rcvlowat()).
 * - SO_PEEK_OFF (TCP since 6.9, on IPv6 since 6.12): MSG_PEEK from an
 *   offset; sk_msg_recvmsg() always peeks from the first unread byte.  -1
 *   turns it off.  (A kernel whose TCP refuses it refuses it the same way
 *   either path.)
 * - TCP_INQ, SO_TIMESTAMP, SO_TIMESTAMPNS, SO_TIMESTAMPING with a receive
 *   flag: control messages that tcp_recvmsg() adds (tcp_inq(),
 *   tcp_recv_timestamp()) and tcp_bpf_recvmsg() does not.
 *
 * And one about sending, OPT_SENDS: this socket's own sends go by TCP.
 *
 * - SO_ZEROCOPY: a send() with MSG_ZEROCOPY expects a completion on the
 *   error queue.  A redirected message gets none (tcp_bpf_sendmsg()
 *   copies it into an sk_msg and knows no ubuf_info), and an application
 *   that waits for it would wait for ever; a message passed to TCP gets
 *   one (probe opt_zerocopy, 6.18).
 *
 * Each value is an int: SO_TIMESTAMPING may pass a struct so_timestamping,
 * whose first member is the int of flags.
 */
static __always_inline __u32 option_bit(struct bpf_sockopt *ctx)
{
	int level = ctx->level, optname = ctx->optname, optlen = ctx->optlen;
	void *optval = ctx->optval, *end = ctx->optval_end;
	int val;

	if (level != SOL_SOCKET && level != IPPROTO_TCP)
		return 0;
	/* The verifier wants the read inside [optval, optval_end). */
	if (optlen < (int)sizeof(val) || optval + sizeof(val) > end)
		return 0;
	val = *(int *)optval;
	if (level == IPPROTO_TCP)
		return optname == TCP_INQ && val ? OPT_INQ : 0;
	switch (optname) {
	case SO_RCVLOWAT:
		return val < 0 || val > 1 ? OPT_RCVLOWAT : 0;
	case SO_PEEK_OFF:
		return val >= 0 ? OPT_PEEK_OFF : 0;
	case SO_ZEROCOPY:
		return val ? OPT_ZEROCOPY : 0;
	case SO_TIMESTAMP_OLD:
	case SO_TIMESTAMP_NEW:
	case SO_TIMESTAMPNS_OLD:
	case SO_TIMESTAMPNS_NEW:
		return val ? OPT_TIMESTAMP : 0;
	case SO_TIMESTAMPING_OLD:
	case SO_TIMESTAMPING_NEW:
		return val & OPT_TSTAMP_RX ? OPT_TIMESTAMP : 0;
	default:
		return 0;
	}
}

/*
 * Put our own key in opt_socks, once, and open the gate.  Our key is our
 * peer's, mirrored.  A full opt_socks is counted (options_untracked): the
 * peer of that socket keeps redirecting.
 */
static __always_inline void opt_mark(struct peer_info *peer, __u32 bit)
{
	struct bypass_stats *st = stats_this_cpu();
	struct sock_key self;
	struct opt_gate *gate;
	__u32 zero = 0, *have;

	mirror_key(&peer->key, &self);
	if (peer->flags & PEER_OPTION) {
		/* Only our own programs write it, under our socket lock. */
		have = bpf_map_lookup_elem(&opt_socks, &self);
		if (have)
			*have |= bit;
		return;
	}
	if (bpf_map_update_elem(&opt_socks, &self, &bit, BPF_NOEXIST)) {
		if (st)
			st->options_untracked++;
		return;
	}
	peer->flags |= PEER_OPTION;
	gate = bpf_map_lookup_elem(&opt_gate, &zero);
	if (gate)
		__sync_fetch_and_add(&gate->sockets, 1);
	if (st)
		st->options_set++;
}

/*
 * Our own sends go by TCP from now on, for good: the same state as when
 * bpf_redir finds its peer's option (peer_set_option()).  We run under our
 * socket lock, as bpf_redir does.
 */
static __always_inline void sends_by_tcp(struct peer_info *peer)
{
	struct bypass_stats *st;

	peer->flags |= PEER_FOR_GOOD;
	if (peer->fallback != FALLBACK_NONE)
		return;
	peer->fallback = FALLBACK_OPTION;
	st = stats_this_cpu();
	if (st)
		st->fallback_option++;
}

SEC("cgroup/setsockopt")
int bpf_sockopt(struct bpf_sockopt *ctx)
{
	struct bpf_sock *sk = ctx->sk;
	struct peer_info *peer;
	__u32 bit;

	if (ctx->optlen > OPT_BUF_MAX)
		ctx->optlen = 0;
	if (!sk)
		return 1;
	bit = option_bit(ctx);
	if (!bit)
		return 1;
	/* Only a socket in the sockhash has this storage with in_map set. */
	peer = bpf_sk_storage_get(&peer_keys, sk, 0, 0);
	if (!peer || !peer->in_map)
		return 1;
	if (bit & OPT_SENDS)
		sends_by_tcp(peer);
	else
		opt_mark(peer, bit);
	return 1;
}

char _license[] SEC("license") = "GPL";
