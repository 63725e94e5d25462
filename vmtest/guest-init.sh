#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# guest-init.sh - PID 1 of a vmtest guest (vmtest.sh boots it).
#
# The initramfs mounted the host's / read-only as our root, a tmpfs on /run
# and the writable share on /run/vmtest, which holds "conf" (what to run).
# We make the rest of a system the tests expect, run bats, leave its TAP
# and exit status in the share, and power off.
set -uo pipefail
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root TERM=dumb

readonly SHARE=/run/vmtest
readonly TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

source "$SHARE/conf"		# kdir, tests, filter, nofile

# The kernel's modules come from the extracted package (kdir, in the cache
# that the tmpfs on /var may hide): for the kernel's own requests
# (request_module) and for anyone who runs modprobe.
mkdir /run/kernel /run/bin
mount --bind "$kdir" /run/kernel
printf '#!/bin/sh\nexec /sbin/modprobe -d /run/kernel "$@"\n' >/run/bin/modprobe
chmod +x /run/bin/modprobe
echo /run/bin/modprobe >/proc/sys/kernel/modprobe
export PATH=/run/bin:$PATH

# Writable tmpfs over the directories programs write to.  If the repo lies
# under one of them (a clone in /tmp), carry it across to the same path.
mkdir /run/top
mount --bind "$TOP" /run/top
for d in /tmp /root /var; do
	mount -t tmpfs -o mode=755 tmpfs "$d"
done
chmod 1777 /tmp
chmod 700 /root
mkdir -p /var/tmp /var/log /var/lib /run/lock "$TOP"
chmod 1777 /var/tmp
ln -s /run /var/run		# iproute2 keeps namespaces in /var/run/netns
ln -s /run/lock /var/lock
mount --move /run/top "$TOP"

# The kernel's own file systems that the scripts and tests use.
mkdir -p /dev/pts /dev/shm
mount -t devpts -o ptmxmode=666 devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
ln -s /proc/self/fd /dev/fd	# bash's <(...) needs /dev/fd
ln -s /proc/self/fd/0 /dev/stdin
ln -s /proc/self/fd/1 /dev/stdout
ln -s /proc/self/fd/2 /dev/stderr
# podman writes its networks' configuration there; the host's stays as it is.
[[ -d /etc/cni/net.d ]] && mount -t tmpfs -o mode=755 tmpfs /etc/cni/net.d
mount -t cgroup2 cgroup2 /sys/fs/cgroup
mount -t bpf bpf /sys/fs/bpf
mount -t tracefs tracefs /sys/kernel/tracing
mount -t debugfs debugfs /sys/kernel/debug
ip link set lo up
hostname vmtest
ulimit -n "$nofile"

echo "guest: $(uname -r), up $(cut -d' ' -f1 /proc/uptime) s, running: ${tests[*]##*/}"
cd "$TOP"
bats --tap --timing "${filter[@]}" "${tests[@]}" 2>&1 | tee "$SHARE/tap"
echo "${PIPESTATUS[0]}" >"$SHARE/rc"
echo "guest: bats exited $(cat "$SHARE/rc"), up $(cut -d' ' -f1 /proc/uptime) s"
sync
echo o >/proc/sysrq-trigger	# power off now
sleep 10
