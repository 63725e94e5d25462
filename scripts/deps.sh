#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# deps.sh [build|demo|test|vmtest|bench|all] - install the Debian/Ubuntu
# packages a job needs.  As root it installs what is missing with apt-get,
# saying so; otherwise it prints the exact command to run.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"

readonly BUILD_PKGS="clang llvm libbpf-dev gcc libc6-dev make"
readonly RUN_PKGS="bpftool iproute2 jq util-linux"
readonly DEMO_PKGS="iperf3 tcpdump"
# prometheus: for promtool, which checks status.sh --prom (tests/metrics.bats).
# iptables: containers.bats's NAT; podman, runc, busybox-static: its real
# containers, from a rootfs built on the machine (no registry is reachable).
readonly TEST_PKGS="bats sockperf curl strace nginx postgresql redis-server rsync haproxy prometheus iptables podman runc busybox-static"
readonly BENCH_PKGS="sockperf gnuplot-nox"
readonly VMTEST_PKGS="qemu-system-x86 busybox-static kmod cpio xz-utils"

# Packages of the tests whose install starts and enables a system service,
# and that service's name.  The tests run their own copies on
# private ports; a service left running would hold ports 80, 5432, 6379...
# and start at every boot.
declare -A SERVICES=([nginx]=nginx [postgresql]=postgresql
	[redis-server]=redis-server [haproxy]=haproxy [rsync]=rsync
	[prometheus]=prometheus)
readonly POLICY_RC=/usr/sbin/policy-rc.d

job=${1:-all}
case $job in
build)	want="$BUILD_PKGS" ;;
demo)	want="$BUILD_PKGS $RUN_PKGS $DEMO_PKGS" ;;
test)	want="$BUILD_PKGS $RUN_PKGS $DEMO_PKGS $TEST_PKGS" ;;
vmtest)	want="$BUILD_PKGS $RUN_PKGS $DEMO_PKGS $TEST_PKGS $VMTEST_PKGS" ;;
bench)	want="$BUILD_PKGS $RUN_PKGS $DEMO_PKGS $BENCH_PKGS" ;;
all)	want="$BUILD_PKGS $RUN_PKGS $DEMO_PKGS $TEST_PKGS $BENCH_PKGS" ;;
*)	echo "Usage: ${0##*/} [build|demo|test|vmtest|bench|all]" >&2; exit 2 ;;
esac

installed() {
	[[ $(dpkg-query -W -f '${Status}' "$1" 2>/dev/null) == "install ok installed" ]]
}

# Ubuntu ships bpftool in linux-tools-*, not in a package of its own.
bpftool_pkgs() {
	if command -v bpftool >/dev/null 2>&1 && bpftool version >/dev/null 2>&1; then
		return
	fi
	if grep -qs '^ID=ubuntu' /etc/os-release; then
		echo "linux-tools-common linux-tools-$(uname -r)"
	else
		echo bpftool
	fi
}

command -v dpkg-query >/dev/null 2>&1 ||
	die "not a Debian/Ubuntu system; install the equivalents of: $want"

missing=()
for p in $want; do
	if [[ $p == bpftool ]]; then
		missing+=($(bpftool_pkgs))
	elif ! installed "$p"; then
		missing+=("$p")
	fi
done
((${#missing[@]} == 0)) && exit 0

if [[ $EUID -ne 0 ]]; then
	die "missing packages: ${missing[*]}; install them with: sudo apt-get install ${missing[*]}"
fi
info "installing missing packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive

# policy-rc.d answering 101 ("action forbidden") stops the maintainer
# scripts' invoke-rc.d and deb-systemd-invoke from starting any service
# during the install.  Ours only if there was none, removed when done.
if [[ ! -e $POLICY_RC ]]; then
	trap 'rm -f "$POLICY_RC"' EXIT
	printf '#!/bin/sh\n# deps.sh: start no service while it installs packages\nexit 101\n' \
		>"$POLICY_RC"
	chmod 755 "$POLICY_RC"
fi
# A fresh machine may have no package lists yet.
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null

# The services of the packages just installed: stopped if one runs anyway,
# and not started at boot.  Services installed before are not ours.
for p in "${missing[@]}"; do
	svc=${SERVICES[$p]:-}
	[[ -n $svc ]] || continue
	if command -v systemctl >/dev/null 2>&1; then
		# Without a running systemd, "disable" still removes the
		# links (and the SysV ones, through systemd-sysv-install).
		if [[ -d /run/systemd/system ]]; then
			systemctl disable --now --quiet "$svc.service" 2>/dev/null || true
		else
			systemctl disable --quiet "$svc.service" 2>/dev/null || true
		fi
	elif command -v update-rc.d >/dev/null 2>&1; then
		update-rc.d "$svc" disable >/dev/null 2>&1 || true
	fi
	info "$p: service $svc not started and disabled at boot"
done
