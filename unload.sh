#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# unload.sh - detach and unpin what load.sh set up, in reverse order.
#
# Idempotent: what is already gone is skipped.  It detaches only the programs
# pinned in our pin directory, found by ID, so another agent's programs on the
# same cgroup or another instance's pins are never touched.
#
# Sockets stay in the sockhash: a connection that is open now keeps its
# bypass until it closes, so no byte queued for it is lost.  The kernel frees
# the programs and the map when the last such connection closes.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

usage() {
	cat >&2 <<EOF
Usage: ${0##*/} [--pin-dir DIR]

Detach the sockops bypass and remove its pins.

  --pin-dir DIR   the pin directory given to load.sh (default:
                  \$SOCKOPS_PIN_DIR, else <bpffs>/sockops)
  -h, --help      this text
EOF
}

pin=
while (($#)); do
	case $1 in
	--pin-dir)	[[ $# -ge 2 ]] || { usage; exit 2; }; pin=$2; shift ;;
	--pin-dir=*)	pin=${1#*=} ;;
	-h|--help)	usage; exit 0 ;;
	*)		echo "${0##*/}: unknown option: $1" >&2; usage; exit 2 ;;
	esac
	shift
done

need_root
need_tools bpftool jq findmnt
pin=$(pin_dir "$pin")

if [[ ! -e $pin ]]; then
	info "nothing loaded in $pin"
	exit 0
fi

# detach PIN ATTACH_TYPE: detach a pinned program from every cgroup it is
# attached to.
# bpftool walks the whole cgroup v2 tree: once, for the three programs.
tree=$(bpftool -j cgroup tree "$(cgroup2_root)" 2>/dev/null) || tree='[]'

# detach PIN TYPE: detach the program pinned as PIN from every cgroup it is
# attached to.
detach() {
	local id cg

	id=$(prog_id "$pin/$1")
	[[ -n $id ]] || return 0
	while read -r cg; do
		[[ -n $cg ]] || continue
		bpftool cgroup detach "$cg" "$2" id "$id" || true
		info "detached $1 (id $id) from $cg"
	done < <(jq -r --argjson id "$id" \
		'.[] | select(any(.programs[]; .id == $id)) | .cgroup' <<<"$tree")
}

# 7, 6, 5. sock_ops first, so no socket is inserted once the others are
# gone; sock_release last, so that a socket that set an option and closes
# meanwhile still leaves opt_socks.
detach "$PIN_SOCKOPS" cgroup_sock_ops
detach "$PIN_SOCKOPT" cgroup_setsockopt
detach "$PIN_RELEASE" cgroup_inet_sock_release

# 4. sk_msg verdict off the sockhash.
if [[ -e $pin/$PIN_REDIR && -e $pin/$PIN_MAP ]]; then
	bpftool prog detach pinned "$pin/$PIN_REDIR" sk_msg_verdict \
		pinned "$pin/$PIN_MAP" 2>/dev/null || true
fi

# 3, 2, 1. the pins, then the directory.  bpftool's pinmaps also pinned the
# read-only data map that holds bpf_printk's format strings (*_rodata).
rm -f "$pin/$PIN_REDIR" "$pin/$PIN_SOCKOPS" "$pin/$PIN_RELEASE" "$pin/$PIN_SOCKOPT" \
	"${PIN_MAPS[@]/#/$pin/}" "$pin/$PIN_MAP_NEW" "$pin"/*_rodata
rmdir "$pin" 2>/dev/null || warn "$pin is not empty; left in place"
info "unloaded $pin"
