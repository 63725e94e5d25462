#!/usr/bin/env bats
# SPDX-License-Identifier: GPL-2.0
#
# Bad input: every mistake a user can make gets a message that says what is
# wrong and what to do, and changes nothing: no pin directory, no program
# attached to the cgroup.  Mount and cgroup problems are staged in a private
# mount namespace (unshare -m), so the host's mounts are never touched.

BASE_PORT=44000
load helpers

# assert_unchanged: no pin directory and nothing attached to the test cgroup.
assert_unchanged() {
	local n

	if [[ -e $SOCKOPS_PIN_DIR ]]; then
		echo "pin directory $SOCKOPS_PIN_DIR was created"
		return 1
	fi
	n=$(bpftool -j cgroup show "$TEST_CG" | jq length)
	if ((n != 0)); then
		echo "$n program(s) attached to $TEST_CG"
		return 1
	fi
}

# in_mntns SCRIPT ARGS...: run a bash SCRIPT in a private mount namespace;
# mounts and unmounts there never propagate to the host.
in_mntns() {
	local script=$1

	shift
	unshare --mount --propagation private bash -c "$script" in_mntns "$@"
}

teardown() {
	[[ -z ${PUBLIC:-} ]] || rm -rf "$PUBLIC"
	common_teardown
}

# public_copy: copy the scripts into $PUBLIC, a fresh directory that every
# user can enter and read.  The clone may not be one: Debian's adduser makes
# home directories 0700, and /root is 0700, so another user cannot run the
# scripts where they are.  load.sh and unload.sh need only common.sh.
public_copy() {
	PUBLIC=$(mktemp -d /tmp/sockops-public.XXXXXX)
	chmod 0755 "$PUBLIC"
	install -m 0755 -t "$PUBLIC" "$TOP/load.sh" "$TOP/unload.sh" "$TOP/common.sh"
}

@test "not root: load.sh and unload.sh say root is needed, show the command, change nothing" {
	local nobody=(setpriv --reuid=nobody --regid=nogroup --clear-groups)

	public_copy
	# A test that cannot reach the scripts would prove nothing.
	"${nobody[@]}" test -x "$PUBLIC/load.sh" -a -r "$PUBLIC/common.sh"

	run "${nobody[@]}" "$PUBLIC/load.sh" --cgroup "$TEST_CG"
	echo "$output"
	((status == 1))
	[[ $output == *"must be run as root"* ]]
	# The hint repeats the user's arguments.
	[[ $output == *"sudo $PUBLIC/load.sh --cgroup $TEST_CG"* ]]
	assert_unchanged

	load_bypass
	run "${nobody[@]}" "$PUBLIC/unload.sh"
	echo "$output"
	((status == 1))
	[[ $output == *"must be run as root"* ]]
	# Still loaded: nothing was detached or unpinned.
	[[ -e $SOCKOPS_PIN_DIR/$PIN_SOCKOPS ]]
	(($(bpftool -j cgroup show "$TEST_CG" | jq length) == 3))
}

@test "a missing tool is named with its package, and nothing changes" {
	local tool f

	# A PATH with everything from /usr/bin and /usr/sbin but one tool.
	mkdir "$TMP/bin"
	cp -sf /usr/bin/* /usr/sbin/* "$TMP/bin/" 2>/dev/null || true
	for tool in bpftool jq findmnt; do
		f=$(readlink "$TMP/bin/$tool")
		rm "$TMP/bin/$tool"
		run env PATH="$TMP/bin" "$TOP/load.sh" --cgroup "$TEST_CG"
		ln -s "$f" "$TMP/bin/$tool"
		echo "$output"
		((status == 1))
		[[ $output == *"missing tool(s): $tool (package: $(tool_pkg "$tool"))"* ]]
		[[ $output == *"make deps"* ]]
		assert_unchanged
	done
}

@test "bpffs not mounted: load.sh mounts it and says so; the host's mounts are untouched" {
	local host_bpffs

	host_bpffs=$(findmnt -n -t bpf -o TARGET | sort)
	[[ -n $host_bpffs ]]
	run in_mntns '
		set -e
		# Every bpffs goes, so load.sh finds none.
		findmnt -n -t bpf -o TARGET | sort -r | xargs -r -n 1 umount -l
		[[ -z $(findmnt -n -t bpf) ]] || exit 99
		"$1/load.sh" --cgroup "$2"
		# The pins are on the bpffs that load.sh mounted, in this namespace.
		findmnt -n -t bpf -o TARGET
		[[ $(stat -f -c %T "$SOCKOPS_PIN_DIR") == bpf_fs ]]
		test -e "$SOCKOPS_PIN_DIR/bpf_sockmap"
		bpftool -j cgroup show "$2" | jq -e "length == 3"
		"$1/unload.sh"
	' "$TOP" "$TEST_CG"
	echo "$output"
	((status == 0))
	[[ $output == *"load.sh: mounted bpffs on /sys/fs/bpf"* ]]
	[[ $output == *"loaded: pins in $SOCKOPS_PIN_DIR"* ]]
	# The host still has its bpffs, and never saw our pins.
	[[ $(findmnt -n -t bpf -o TARGET | sort) == "$host_bpffs" ]]
	assert_unchanged
}

@test "a pin directory off bpffs is refused before anything is created" {
	run "$TOP/load.sh" --cgroup "$TEST_CG" --pin-dir "$TMP/pins"
	echo "$output"
	((status == 1))
	[[ $output == *"pin directory $TMP/pins is not on a bpffs"* ]]
	[[ ! -e $TMP/pins ]]
	assert_unchanged
}

@test "no cgroup v2 mounted: load.sh says how to mount one and changes nothing" {
	run in_mntns '
		findmnt -n -t cgroup2 -o TARGET | sort -r | xargs -r -n 1 umount -l
		[[ -z $(findmnt -n -t cgroup2) ]] || exit 99
		"$1/load.sh" --cgroup "$2"
	' "$TOP" "$TEST_CG"
	echo "$output"
	((status == 1))
	[[ $output == *"no cgroup v2 mounted"* ]]
	[[ $output == *"mount -t cgroup2"* ]]
	assert_unchanged
}

@test "objects not built: load.sh says to run make and changes nothing" {
	mkdir "$TMP/empty"
	SOCKOPS_OBJ_DIR=$TMP/empty run "$TOP/load.sh" --cgroup "$TEST_CG"
	echo "$output"
	((status == 1))
	[[ $output == *"$TMP/empty/bpf_sockops.o not found: build it first with 'make'"* ]]
	assert_unchanged
}

@test "a wrong --cgroup path is refused with the cgroup v2 mount point" {
	local path

	# Missing, a plain directory, a cgroup v1 hierarchy if this host has
	# one (a hybrid host), and a file inside the cgroup.
	for path in /nonexistent/cgroup "$TMP" \
		$(findmnt -n -t cgroup -o TARGET | head -n 1) "$TEST_CG/cgroup.procs"; do
		run "$TOP/load.sh" --cgroup "$path"
		echo "$output"
		((status == 1))
		[[ $output == *"--cgroup $path is not a cgroup v2 directory (cgroup v2 is mounted on $CG_ROOT)"* ]]
		assert_unchanged
	done
}

@test "an unknown option or a missing argument prints usage and exits 2" {
	local script

	for script in load.sh unload.sh; do
		run "$TOP/$script" --bogus
		echo "$output"
		((status == 2))
		[[ $output == *"unknown option: --bogus"* ]]
		[[ $output == *"Usage: $script"* ]]

		run "$TOP/$script" --pin-dir
		((status == 2))
		[[ $output == *"Usage: $script"* ]]
	done
	run "$TOP/load.sh" --cgroup
	((status == 2))
	[[ $output == *"Usage: load.sh"* ]]
	assert_unchanged
}

# A sock_ops object with the real section name and maps whose program calls
# an sk_msg helper: what an older or differently configured kernel does to
# a program that needs something it lacks.
@test "a program the verifier rejects: its reason and the minimum kernel are shown, nothing is left" {
	mkdir "$TMP/obj"
	cat >"$TMP/bad_sockops.c" <<'EOF'
// SPDX-License-Identifier: GPL-2.0
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "bpf_sockops.h"
#include "bpf_maps.h"

SEC("sockops")
int bpf_sockmap(struct bpf_sock_ops *skops)
{
	struct sock_key key = {};

	/* Allowed only in sk_msg programs: the verifier refuses it here. */
	return bpf_msg_redirect_hash((void *)skops, &sock_ops_map, &key, 0);
}

char _license[] SEC("license") = "GPL";
EOF
	bpf_cc "$TMP/bad_sockops.c" "$TMP/obj/bpf_sockops.o"
	cp "$TOP/bpf_redir.o" "$TOP/bpf_sockopt.o" "$TMP/obj/"

	SOCKOPS_OBJ_DIR=$TMP/obj run "$TOP/load.sh" --cgroup "$TEST_CG"
	echo "$output"
	((status != 0))
	# The verifier's own reason.  Linux 6.10 reworded it (786bf0e7e2ec
	# "bpf: improve error message for unsupported helper"); before, it
	# said "unknown func", unless the distribution backported the change
	# (Debian 12's 6.1 did not, Ubuntu 24.04's 6.8 did) ...
	if kernel_before 6.10 && [[ $output == *"unknown func "* ]]; then
		[[ $output == *"unknown func bpf_msg_redirect_hash#"* ]]
	else
		[[ $output == *"program of this type cannot use helper bpf_msg_redirect_hash#"* ]]
	fi
	# ... then ours: the minimum kernel, this kernel, and the rollback.
	[[ $output == *"the kernel's verifier rejected the program"* ]]
	[[ $output == *"needs Linux >= 6.1"* ]]
	[[ $output == *"this kernel is $(uname -r)"* ]]
	[[ $output == *"failed at: load $TMP/obj/bpf_sockops.o; rolling back"* ]]
	assert_unchanged
}
