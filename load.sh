#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# load.sh - load the sockops bypass and attach it to a cgroup v2.
#
# Steps, all undone if one fails:
#   1. create the sockhash, --max-entries large, and pin it
#   2. load bpf_sockops.o onto it, pin its two programs and its other maps
#   3. load bpf_redir.o, reusing the pinned maps (never a second sockhash)
#   4. attach bpf_redir to the sockhash as its sk_msg verdict
#   5. attach bpf_release to the cgroup as sock_release, and
#   6. bpf_sockmap as sock_ops, both with "multi" so that other programs on
#      the cgroup keep running
# Step 4 comes before step 6: a socket takes the map's programs when it is
# inserted, so the verdict must be in place before the first insert.  Step 5
# comes before step 6 too, so that no inserted socket closes unseen.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

readonly OBJ_DIR=${SOCKOPS_OBJ_DIR:-$TOP_DIR}
readonly SOCKOPS_OBJ=$OBJ_DIR/bpf_sockops.o
readonly REDIR_OBJ=$OBJ_DIR/bpf_redir.o
readonly MIN_KERNEL=5.15
# --max-entries bounds.  The kernel allocates the sockhash's buckets up
# front, 16 bytes for each of max_entries rounded up to a power of two: 16
# MiB at 1M entries, 256 MiB at the upper bound here.
readonly MAX_ENTRIES_MIN=2 MAX_ENTRIES_MAX=16777216

usage() {
	cat >&2 <<EOF
Usage: ${0##*/} [--cgroup PATH] [--pin-dir DIR] [--max-entries N] [--quiet]

Load the sockops bypass and attach it to a cgroup v2.

  --cgroup PATH   cgroup v2 directory to attach to (default: the root of the
                  cgroup v2 mount); only its sockets are accelerated
  --pin-dir DIR   bpffs directory for the pins (default: \$SOCKOPS_PIN_DIR,
                  else <bpffs>/sockops); one directory per instance
  --max-entries N capacity of the sockhash in sockets, two per connection,
                  $MAX_ENTRIES_MIN to $MAX_ENTRIES_MAX (default: MAX_ENTRIES of bpf_sockops.h,
                  65536 as shipped)
  --quiet         no per-connection line in the trace buffer
  -h, --help      this text
EOF
}

# For need_root's message, before the loop below consumes them.
readonly ARGS=("$@")

cgroup=
pin=
trace=1
entries_arg=
entries_set=0
while (($#)); do
	case $1 in
	--cgroup)	[[ $# -ge 2 ]] || { usage; exit 2; }; cgroup=$2; shift ;;
	--cgroup=*)	cgroup=${1#*=} ;;
	--pin-dir)	[[ $# -ge 2 ]] || { usage; exit 2; }; pin=$2; shift ;;
	--pin-dir=*)	pin=${1#*=} ;;
	--max-entries)	[[ $# -ge 2 ]] || { usage; exit 2; }; entries_arg=$2; entries_set=1; shift ;;
	--max-entries=*) entries_arg=${1#*=}; entries_set=1 ;;
	--quiet)	trace=0 ;;
	-h|--help)	usage; exit 0 ;;
	*)		echo "${0##*/}: unknown option: $1" >&2; usage; exit 2 ;;
	esac
	shift
done

# Ten digits at most, so that the comparison cannot overflow.
if ((entries_set)); then
	[[ $entries_arg =~ ^[0-9]{1,10}$ ]] &&
		((10#$entries_arg >= MAX_ENTRIES_MIN && 10#$entries_arg <= MAX_ENTRIES_MAX)) ||
		die "--max-entries $entries_arg: give a number of sockets from $MAX_ENTRIES_MIN to $MAX_ENTRIES_MAX"
	entries_arg=$((10#$entries_arg))
fi

need_root "${ARGS[@]}"
need_tools bpftool jq findmnt
for obj in "$SOCKOPS_OBJ" "$REDIR_OBJ"; do
	[[ -f $obj ]] || die "$obj not found: build it first with 'make'"
done

# sockhash_def OBJ: "KEY_SIZE VALUE_SIZE MAX_ENTRIES" of the sockhash as
# bpf_maps.h defines it, read from the object's BTF.  In a BTF-defined map,
# __uint(max_entries, N) is an "int (*max_entries)[N]" and __type(key, T) a
# "T *key": follow the pointer, then read the array length or the size.
sockhash_def() {
	bpftool -j btf dump file "$1" | jq -r --arg map "$PIN_MAP" '
		(.types | map({key: (.id | tostring), value: .}) | from_entries) as $t |
		def type($id): $t[$id | tostring] as $x |
			if $x.kind == "TYPEDEF" or $x.kind == "CONST" or $x.kind == "VOLATILE"
			then type($x.type_id) else $x end;
		def size($id): type($id) as $x |
			if $x.kind == "ARRAY" then $x.nr_elems * size($x.type_id) else $x.size end;
		(.types[] | select(.kind == "VAR" and .name == $map)) as $var |
		(type($var.type_id).members | map({key: .name, value: .type_id}) | from_entries) as $m |
		"\(size(type($m.key).type_id)) \(size(type($m.value).type_id)) \(type(type($m.max_entries).type_id).nr_elems)"'
}
read -r key_size value_size default_entries < <(sockhash_def "$SOCKOPS_OBJ") &&
	[[ $key_size =~ ^[0-9]+$ && $value_size =~ ^[0-9]+$ && $default_entries =~ ^[0-9]+$ ]] ||
	die "cannot read the definition of $PIN_MAP from the BTF of $SOCKOPS_OBJ: rebuild it with 'make'"
entries=${entries_arg:-$default_entries}

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

# Already loaded?  Done if both cgroup programs are attached where asked
# (refuse if elsewhere, or if --max-entries asks for another capacity: a
# live sockhash cannot be resized); clear a half-done load left by a crash.
if [[ -e $pin ]]; then
	where=$(attached_cgroups "$(prog_id "$pin/$PIN_SOCKOPS")")
	rwhere=$(attached_cgroups "$(prog_id "$pin/$PIN_RELEASE")")
	if [[ -n $where && $rwhere == "$where" ]]; then
		[[ $where == "$cgroup" ]] ||
			die "already loaded from $pin and attached to $where; run unload.sh first, or use another --pin-dir"
		have=$(bpftool -j map show pinned "$pin/$PIN_MAP" | jq .max_entries)
		[[ -z $entries_arg || $have == "$entries" ]] ||
			die "already loaded from $pin with a sockhash of $have entries; run unload.sh first to load it with --max-entries $entries"
		info "already loaded: $pin, attached to $cgroup, sockhash of $have entries"
		exit 0
	fi
	warn "removing the incomplete load in $pin"
	"$TOP_DIR/unload.sh" --pin-dir "$pin" >/dev/null
fi

# A program attached without "multi" (exclusively) forbids any other of its
# type; say so before changing anything.
excl=$(bpftool -j cgroup show "$cgroup" 2>/dev/null |
	jq -r '.[] | select((.attach_type | test("sock_ops|sock_release")) and .attach_flags != "multi") | "\(.attach_type) program \(.name) (id \(.id))"')
[[ -z $excl ]] ||
	die "$cgroup has $excl attached without 'multi' (exclusively): the kernel allows no second program of its type there; detach it or use --cgroup"

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

# The sockhash is created here, at the size asked for, and bpf_sockops.o is
# loaded onto it ("map name ... pinned ...": libbpf reuses it instead of
# creating the one in the object).  It is pinned under a temporary name
# first, because "pinmaps" then pins every map of the object, this one
# included, and would fail on a name already taken.
run "create $PIN_MAP ($entries entries)" \
	bpftool map create "$pin/$PIN_MAP_NEW" type sockhash \
		key "$key_size" value "$value_size" entries "$entries" name "$PIN_MAP"
run "load $SOCKOPS_OBJ" \
	bpftool prog loadall "$SOCKOPS_OBJ" "$pin" \
		map name "$PIN_MAP" pinned "$pin/$PIN_MAP_NEW" pinmaps "$pin"
rm -f "$pin/$PIN_MAP_NEW"
mapfile -t reuse < <(reuse_map_args "$pin")
run "load $REDIR_OBJ" \
	bpftool prog load "$REDIR_OBJ" "$pin/$PIN_REDIR" "${reuse[@]}"
# struct bypass_config { __u32 trace; }: four bytes in host byte order.
run "set trace=$trace in $pin/$PIN_CONFIG" \
	bpftool map update pinned "$pin/$PIN_CONFIG" \
		key $(u32_bytes 0) value $(u32_bytes "$trace")
run "attach $PIN_REDIR as sk_msg_verdict" \
	bpftool prog attach pinned "$pin/$PIN_REDIR" sk_msg_verdict pinned "$pin/$PIN_MAP"
run "attach $PIN_RELEASE to $cgroup" \
	bpftool cgroup attach "$cgroup" cgroup_inet_sock_release pinned "$pin/$PIN_RELEASE" multi
run "attach $PIN_SOCKOPS to $cgroup" \
	bpftool cgroup attach "$cgroup" cgroup_sock_ops pinned "$pin/$PIN_SOCKOPS" multi

info "loaded: pins in $pin, sock_ops attached to $cgroup, sockhash of $entries entries"
