#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# load.sh - load the sockops bypass and attach it to a cgroup v2.
#
# Steps, all undone if one fails:
#   1. load bpf_sockops.o, pin its program and its maps in the pin directory
#   2. load bpf_redir.o, reusing the pinned maps (never a second sockhash)
#   3. attach bpf_redir to the sockhash as its sk_msg verdict
#   4. attach bpf_sockmap to the cgroup as sock_ops, with "multi" so that
#      other sock_ops programs on the cgroup keep running
# Step 3 comes before step 4: a socket takes the map's programs when it is
# inserted, so the verdict must be in place before the first insert.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

readonly OBJ_DIR=${SOCKOPS_OBJ_DIR:-$TOP_DIR}
readonly SOCKOPS_OBJ=$OBJ_DIR/bpf_sockops.o
readonly REDIR_OBJ=$OBJ_DIR/bpf_redir.o
readonly MIN_KERNEL=6.1
readonly PAGE_SIZE=$(getconf PAGESIZE)

# The per-connection queue bound, when --max-queue is not given: a quarter
# of TCP's pressure threshold (tcp_mem[1]), but at least 16 MiB and at most
# 64 MiB.  A bulk transfer's reader that shares its CPUs with a busy host can
# fall tens of MiB behind the bypass; below the bound it keeps the bypass.
# Past it, the host guard still bounds all connections together.
default_max_queue() {
	local q=$(($(tcp_mem 1) * PAGE_SIZE / 4))

	((q < 16 << 20)) && q=$((16 << 20))
	((q > 64 << 20)) && q=$((64 << 20))
	echo $((q >> 20 << 20))
}

usage() {
	cat >&2 <<EOF
Usage: ${0##*/} [--cgroup PATH] [--pin-dir DIR] [--quiet]
               [--max-queue SIZE] [--max-tcp-mem SIZE]

Load the sockops bypass and attach it to a cgroup v2.

  --cgroup PATH        cgroup v2 directory to attach to (default: the root
                       of the cgroup v2 mount); only its sockets are
                       accelerated
  --pin-dir DIR        bpffs directory for the pins (default:
                       \$SOCKOPS_PIN_DIR, else <bpffs>/sockops); one
                       directory per instance
  --quiet              no per-connection line in the trace buffer
  --max-queue SIZE     per connection: go by TCP once the receiver would hold
                       more than SIZE unread, each message counted with 1 KiB
                       of overhead (default: $(human_size "$(default_max_queue)") on this host; 0: no bound)
  --max-tcp-mem SIZE   per host: go by TCP once all TCP sockets together hold
                       SIZE of memory (default: tcp_mem's pressure threshold,
                       $(human_size $(($(tcp_mem 1) * PAGE_SIZE))) here; 0: no guard)
  -h, --help           this text

SIZE is a number of bytes with an optional K, M or G suffix (powers of 1024).
Run again on a loaded instance to change --quiet, --max-queue or
--max-tcp-mem in place.
EOF
}

# For need_root's message, before the loop below consumes them.
readonly ARGS=("$@")

cgroup=
pin=
trace=1
max_queue=
max_tcp_mem=
while (($#)); do
	case $1 in
	--cgroup)	[[ $# -ge 2 ]] || { usage; exit 2; }; cgroup=$2; shift ;;
	--cgroup=*)	cgroup=${1#*=} ;;
	--pin-dir)	[[ $# -ge 2 ]] || { usage; exit 2; }; pin=$2; shift ;;
	--pin-dir=*)	pin=${1#*=} ;;
	--quiet)	trace=0 ;;
	--max-queue)	[[ $# -ge 2 ]] || { usage; exit 2; }; max_queue=$2; shift ;;
	--max-queue=*)	max_queue=${1#*=} ;;
	--max-tcp-mem)	[[ $# -ge 2 ]] || { usage; exit 2; }; max_tcp_mem=$2; shift ;;
	--max-tcp-mem=*) max_tcp_mem=${1#*=} ;;
	-h|--help)	usage; exit 0 ;;
	*)		echo "${0##*/}: unknown option: $1" >&2; usage; exit 2 ;;
	esac
	shift
done

# size_opt NAME VALUE DEFAULT: VALUE in bytes, DEFAULT if VALUE is empty.
size_opt() {
	[[ -n $2 ]] || { echo "$3"; return; }
	parse_size "$2" && return
	echo "${0##*/}: $1: not a size: $2" >&2
	usage
	exit 2
}
max_queue=$(size_opt --max-queue "$max_queue" "$(default_max_queue)")
max_tcp_mem=$(size_opt --max-tcp-mem "$max_tcp_mem" $(($(tcp_mem 1) * PAGE_SIZE)))

need_root "${ARGS[@]}"
need_tools bpftool jq findmnt
for obj in "$SOCKOPS_OBJ" "$REDIR_OBJ"; do
	[[ -f $obj ]] || die "$obj not found: build it first with 'make'"
done

cgroot=$(cgroup2_root)
cgroup=${cgroup:-$cgroot}
[[ -d $cgroup && $(stat -f -c %T "$cgroup") == cgroup2fs ]] ||
	die "--cgroup $cgroup is not a cgroup v2 directory (cgroup v2 is mounted on $cgroot)"
cgroup=$(realpath "$cgroup")
# Mount bpffs on /sys/fs/bpf if none is mounted, even when --pin-dir names
# the directory: pins can only live on a bpffs.
bpffs=$(bpffs_dir)
pin=$(pin_dir "$pin")
# Refuse a pin directory off bpffs before creating anything: mkdir would
# fail with a bare "Operation not permitted" on sysfs, or succeed on a
# normal filesystem where bpftool cannot pin.
top=$pin
while [[ ! -e $top ]]; do
	top=$(dirname "$top")
done
[[ $(stat -f -c %T "$top") == bpf_fs ]] ||
	die "pin directory $pin is not on a bpffs (bpffs is mounted on $bpffs)"

# write_config: struct bypass_config (bpf_sockops.h), field by field in host
# byte order: __u32 trace, __u32 page_shift, __u64 max_queue, __u64
# max_tcp_mem.
write_config() {
	local shift=0

	while (((1 << shift) < PAGE_SIZE)); do
		((shift++))
	done
	bpftool map update pinned "$pin/$PIN_CONFIG" key $(u32_bytes 0) \
		value hex $(uint_bytes 4 "$trace") $(uint_bytes 4 "$shift") \
		$(uint_bytes 8 "$max_queue") $(uint_bytes 8 "$max_tcp_mem")
}

# settings: the memory bounds in force, in words.
settings() {
	local q=none h=none

	((max_queue)) && q="$(human_size "$max_queue") per connection"
	((max_tcp_mem)) && h="$(human_size "$max_tcp_mem") of TCP memory"
	echo "queue bound: $q; host guard: $h"
}

# Already loaded?  Done if attached where asked; refuse if attached
# elsewhere; clear a half-done load left by a crash.
if [[ -e $pin ]]; then
	id=$(prog_id "$pin/$PIN_SOCKOPS")
	where=$(attached_cgroups "$id")
	if [[ -n $where ]]; then
		[[ $where == "$cgroup" ]] ||
			die "already loaded from $pin and attached to $where; run unload.sh first, or use another --pin-dir"
		write_config >/dev/null ||
			die "cannot update the settings in $pin/$PIN_CONFIG"
		info "already loaded: $pin, attached to $cgroup; $(settings)"
		exit 0
	fi
	warn "removing the incomplete load in $pin"
	"$TOP_DIR/unload.sh" --pin-dir "$pin" >/dev/null
fi

# A sock_ops program attached without "multi" (exclusively) forbids any
# other; say so before changing anything.
excl=$(bpftool -j cgroup show "$cgroup" 2>/dev/null |
	jq -r '.[] | select((.attach_type == "sock_ops" or .attach_type == "cgroup_sock_ops") and .attach_flags != "multi") | "\(.name) (id \(.id))"')
[[ -z $excl ]] ||
	die "$cgroup has sock_ops program $excl attached without 'multi' (exclusively): the kernel allows no second program there; detach it or use --cgroup"

step=
rollback() {
	local rc=$?

	trap - EXIT
	((rc == 0)) && return
	echo "${0##*/}: failed at: $step; rolling back" >&2
	"$TOP_DIR/unload.sh" --pin-dir "$pin" >/dev/null 2>&1 || true
	exit "$rc"
}

# run WHAT CMD...: run one step; on failure show its output and stop.
run() {
	local out

	step=$1
	shift
	if ! out=$("$@" 2>&1); then
		echo "$out" >&2
		if grep -q "PROG LOAD LOG\|verifier" <<<"$out"; then
			echo "${0##*/}: the kernel's verifier rejected the program (its log is above); the bypass needs Linux >= $MIN_KERNEL with cgroup BPF and sockmap (CONFIG_BPF_STREAM_PARSER); this kernel is $(uname -r)" >&2
		fi
		return 1
	fi
}

mkdir -p "$pin"
trap rollback EXIT

run "load $SOCKOPS_OBJ" \
	bpftool prog load "$SOCKOPS_OBJ" "$pin/$PIN_SOCKOPS" pinmaps "$pin"
mapfile -t reuse < <(reuse_map_args "$pin")
run "load $REDIR_OBJ" \
	bpftool prog load "$REDIR_OBJ" "$pin/$PIN_REDIR" "${reuse[@]}"
run "write the settings to $pin/$PIN_CONFIG" write_config
run "attach $PIN_REDIR as sk_msg_verdict" \
	bpftool prog attach pinned "$pin/$PIN_REDIR" sk_msg_verdict pinned "$pin/$PIN_MAP"
run "attach $PIN_SOCKOPS to $cgroup" \
	bpftool cgroup attach "$cgroup" cgroup_sock_ops pinned "$pin/$PIN_SOCKOPS" multi

info "loaded: pins in $pin, sock_ops attached to $cgroup; $(settings)"
if ((max_queue)) && ! kernel_counts_redirected; then
	warn "the queue bound may not work on this kernel ($(kernel_version)): it reads the receiver's sk_rmem_alloc, which counts redirected bytes only since Linux 6.13, 6.12.8 and 6.1.123; without it a receiver that stops reading lets its sender queue up to the host guard"
fi
