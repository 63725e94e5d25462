// SPDX-License-Identifier: GPL-2.0
/*
 * claim - take a key in the pinned sockhash before the socket it belongs to
 * is established, as another namespace's connection with the same
 * four-tuple and initial sequence numbers would: the key's owner then
 * collides (bpf_sockops.c, mark_collision()).
 *
 *   claim -M PINNED_SOCKHASH -k HEXKEY
 *
 * HEXKEY is the struct sock_key, byte by byte in hex as it sits in memory
 * (what "bpftool map dump" shows).  claim makes a loopback connection of its
 * own, inserts its accepted end under the key (BPF_NOEXIST), prints
 * "claimed" and holds it until it is killed.  Run it outside the bypass's
 * cgroup: its own connection is nobody's business.
 */
#include <arpa/inet.h>
#include <linux/bpf.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "bpf_sockops.h"
#include "lib/util.h"

static long sys_bpf(int cmd, union bpf_attr *attr)
{
	return syscall(SYS_bpf, cmd, attr, sizeof(*attr));
}

static void parse_key(const char *hex, struct sock_key *key)
{
	unsigned char *b = (unsigned char *)key;
	size_t i;

	if (strlen(hex) != 2 * sizeof(*key))
		die("claim: the key is %zu bytes, %zu hex digits", sizeof(*key),
		    2 * sizeof(*key));
	for (i = 0; i < sizeof(*key); i++)
		if (sscanf(hex + 2 * i, "%2hhx", &b[i]) != 1)
			die("claim: not hex: %s", hex);
}

int main(int argc, char **argv)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	const char *pin = NULL, *hex = NULL;
	socklen_t len = sizeof(a);
	union bpf_attr attr = {};
	struct sock_key key;
	int c, lfd, cfd, sfd, map;
	__u64 value;

	while ((c = getopt(argc, argv, "M:k:")) != -1) {
		switch (c) {
		case 'M': pin = optarg; break;
		case 'k': hex = optarg; break;
		default: die("usage: claim -M PINNED_SOCKHASH -k HEXKEY");
		}
	}
	if (!pin || !hex)
		die("usage: claim -M PINNED_SOCKHASH -k HEXKEY");
	parse_key(hex, &key);

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	lfd = socket(AF_INET, SOCK_STREAM, 0);
	cfd = socket(AF_INET, SOCK_STREAM, 0);
	if (lfd < 0 || cfd < 0 || bind(lfd, (struct sockaddr *)&a, sizeof(a)) ||
	    listen(lfd, 1) || getsockname(lfd, (struct sockaddr *)&a, &len) ||
	    connect(cfd, (struct sockaddr *)&a, sizeof(a)))
		die("claim: loopback connection");
	sfd = accept(lfd, NULL, NULL);
	if (sfd < 0)
		die("claim: accept");

	attr.pathname = (uintptr_t)pin;
	map = sys_bpf(BPF_OBJ_GET, &attr);
	if (map < 0)
		die("claim: open %s", pin);
	/* A sockhash update from user space takes the socket's descriptor. */
	value = sfd;
	memset(&attr, 0, sizeof(attr));
	attr.map_fd = map;
	attr.key = (uintptr_t)&key;
	attr.value = (uintptr_t)&value;
	attr.flags = BPF_NOEXIST;
	if (sys_bpf(BPF_MAP_UPDATE_ELEM, &attr))
		die("claim: insert under the key");
	printf("claimed\n");
	fflush(stdout);
	for (;;)
		pause();
}
