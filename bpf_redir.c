// SPDX-License-Identifier: GPL-2.0
/*
 * bpf_redir.c - send each message straight into the peer's receive queue.
 *
 * An sk_msg program attached (sk_msg_verdict) to the sockhash runs on every
 * sendmsg() of a socket in that map.  bpf_sockops stored the peer's key in
 * the socket's local storage when the connection was established; we fetch
 * it and ask the kernel to redirect the message to that socket's ingress
 * queue.  The data then skips TCP, IP and the loopback device entirely.
 *
 * This runs on every send, so it does the least it can: one storage lookup,
 * the redirect, one per-CPU counter update.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "bpf_sockops.h"
#include "bpf_maps.h"

static __always_inline void count_msg(long verdict, __u32 size)
{
	struct bypass_stats *st = stats_this_cpu();

	if (!st)
		return;
	if (verdict == SK_PASS) {
		st->msgs_redirected++;
		st->bytes_redirected += size;
	} else {
		st->msgs_passed++;
		st->bytes_passed += size;
	}
}

SEC("sk_msg")
int bpf_redir(struct sk_msg_md *msg)
{
	struct bpf_sock *sk = CTX_READ(msg->sk);
	__u32 size = CTX_READ(msg->size);
	struct peer_info *peer;
	long verdict = SK_DROP;

	peer = bpf_sk_storage_get(&peer_keys, sk, 0, 0);
	/*
	 * On a hit bpf_msg_redirect_hash() returns SK_PASS and marks the
	 * message for the peer's ingress queue.  On a miss it returns SK_DROP,
	 * and returning that would fail the sender's send() with EACCES: a
	 * socket whose peer is not in the map (not established yet, in another
	 * cgroup, or on another host) must simply use TCP.  So we always
	 * return SK_PASS.
	 */
	if (peer && !peer->use_tcp) {
		verdict = bpf_msg_redirect_hash(msg, &sock_ops_map, &peer->key,
						BPF_F_INGRESS);
		/*
		 * Once a send went by TCP, so do all later ones: see struct
		 * peer_info.  The program runs under the sender's socket lock,
		 * so this plain store races with nothing.
		 */
		if (verdict != SK_PASS)
			peer->use_tcp = 1;
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
	 *   counters would then see one message per n bytes.
	 *
	 * docs/performance.md has the measurements.
	 */
	count_msg(verdict, size);
	return SK_PASS;
}

char _license[] SEC("license") = "GPL";
