#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# trace_lo_traffic.sh [PORT] [TCPDUMP_ARGS...] - show the TCP packets on lo
# for PORT (default 5001).  With the bypass on, a connection puts only its
# three-way handshake and its teardown on lo: the data goes socket to socket.
# With it off, every segment of data shows up here too.  Ctrl-C stops.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

readonly DEFAULT_PORT=5001

if [[ ${1:-} == -h || ${1:-} == --help ]]; then
	echo "Usage: ${0##*/} [PORT] [TCPDUMP_ARGS...]   (default port $DEFAULT_PORT)" >&2
	exit 0
fi
port=${1:-$DEFAULT_PORT}
[[ $port =~ ^[0-9]+$ ]] && ((port > 0 && port < 65536)) || die "bad port: $port"
shift $(($# > 0 ? 1 : 0))
need_root
need_tools tcpdump

# -nn: numeric hosts and ports; -l: line-buffered, so output shows at once.
# exec: tcpdump gets Ctrl-C or a TERM itself, and exits 0 after its summary.
exec tcpdump -i lo -nn -l "$@" "tcp port $port"
