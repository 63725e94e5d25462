#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# deps.sh [build|demo|test|bench|all] - install the Debian/Ubuntu packages a
# job needs.  As root it installs what is missing with apt-get, saying so;
# otherwise it prints the exact command to run.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

readonly BUILD_PKGS="clang llvm libbpf-dev gcc libc6-dev make"
readonly RUN_PKGS="bpftool iproute2 jq util-linux"
readonly DEMO_PKGS="iperf3 tcpdump"
# prometheus: for promtool, which checks status.sh --prom; its server is
# neither started nor enabled (see below).
readonly TEST_PKGS="bats sockperf prometheus"
readonly BENCH_PKGS="sockperf gnuplot-nox"

job=${1:-all}
case $job in
build)	want="$BUILD_PKGS" ;;
demo)	want="$BUILD_PKGS $RUN_PKGS $DEMO_PKGS" ;;
test)	want="$BUILD_PKGS $RUN_PKGS $DEMO_PKGS $TEST_PKGS" ;;
bench)	want="$BUILD_PKGS $RUN_PKGS $DEMO_PKGS $BENCH_PKGS" ;;
all)	want="$BUILD_PKGS $RUN_PKGS $DEMO_PKGS $TEST_PKGS $BENCH_PKGS" ;;
*)	echo "Usage: ${0##*/} [build|demo|test|bench|all]" >&2; exit 2 ;;
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
# A fresh machine may have no package lists yet.
apt-get update -qq
# We want the packages' tools, not their daemons: while installing, a
# policy-rc.d that says 101 keeps invoke-rc.d from starting any service
# (unless the host has a policy of its own), and afterwards the services
# that come with them are disabled.
policy=/usr/sbin/policy-rc.d
if [[ ! -e $policy ]]; then
	printf '#!/bin/sh\nexit 101\n' >"$policy"
	chmod 0755 "$policy"
	trap 'rm -f "$policy"' EXIT
fi
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# systemctl disable works on the unit files without a running systemd.
for svc in prometheus; do
	if [[ " ${missing[*]} " == *" $svc "* ]] && command -v systemctl >/dev/null; then
		systemctl disable --quiet "$svc.service" >/dev/null 2>&1 || true
		# Started anyway (a host policy that allows it): stop it.
		if [[ -d /run/systemd/system ]]; then
			systemctl stop "$svc.service" >/dev/null 2>&1 || true
		fi
		info "disabled $svc.service: only its tools are needed"
	fi
done
