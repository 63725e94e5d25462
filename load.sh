#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# load.sh - load the sockops bypass and attach it to a cgroup v2.
#
# Steps, all undone if one fails:
#   1. create the sockhash, --max-entries large, and pin it
#   2. load bpf_sockops.o onto it, pin its two programs and its other maps
#   3. load bpf_redir.o and bpf_sockopt.o, reusing the pinned maps (never a
#      second sockhash)
#   4. attach bpf_redir to the sockhash as its sk_msg verdict
#   5. attach bpf_release to the cgroup as sock_release,
#   6. bpf_sockopt as setsockopt, and
#   7. bpf_sockmap as sock_ops, all three with "multi" so that other
#      programs on the cgroup keep running
# Step 4 comes before step 7: a socket takes the map's programs when it is
# inserted, so the verdict must be in place before the first insert.  Steps
# 5 and 6 come before step 7 too, so that no inserted socket closes, or sets
# an option, unseen.  The
# skip lists are filled before step 6 too.  Run again on a loaded bypass,
# --skip-ports and --skip-cgroup replace the lists in place (for new
# connections; open ones keep what they have).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

readonly OBJ_DIR=${SOCKOPS_OBJ_DIR:-$TOP_DIR}
readonly SOCKOPS_OBJ=$OBJ_DIR/bpf_sockops.o
readonly REDIR_OBJ=$OBJ_DIR/bpf_redir.o
readonly SOCKOPT_OBJ=$OBJ_DIR/bpf_sockopt.o
readonly MIN_KERNEL=6.1
readonly PAGE_SIZE=$(getconf PAGESIZE)
# --max-entries bounds.  The kernel allocates the sockhash's buckets up
# front, 16 bytes for each of max_entries rounded up to a power of two: 16
# MiB at 1M entries, 256 MiB at the upper bound here.
readonly MAX_ENTRIES_MIN=2 MAX_ENTRIES_MAX=16777216

# The per-connection queue bound, when --max-queue is not given, grows as
# TCP's receive buffer does: each connection starts at tcp_wmem[2], the most
# TCP lets a sender queue, so that a reader that never reads holds its
# sender to about twice what plain TCP lets it hold (the bound, then TCP's
# send buffer); as its reader reads, the bound grows to twice what it has
# read (bpf_redir.c, queue_bound()), up to QUEUE_CEILING or tcp_rmem[2],
# the most TCP's receive buffer grows to, whichever is more.  The bypass
# needs more slack than TCP, whose sender waits when the reader lags: ours
# cannot wait in sk_msg, so a lagging reader costs a detour by TCP, and on
# a busy host 64 MiB kept 97% of a bulk transfer's bytes on the bypass
# where 32 MiB kept 81% (bench/results.md, "The queue bound").  Both are at
# most a quarter of TCP's pressure threshold (tcp_mem[1]) on a host so small
# that it is less, and never under 1 MiB.
readonly QUEUE_CEILING=$((64 << 20))

# default_queue start|ceiling: the bound a connection starts at, or the one
# it may grow to, in whole MiB.
default_queue() {
	local q cap=$(($(tcp_mem 1) * PAGE_SIZE / 4))

	if [[ $1 == start ]]; then
		read -r _ _ q </proc/sys/net/ipv4/tcp_wmem
	else
		read -r _ _ q </proc/sys/net/ipv4/tcp_rmem
		((q < QUEUE_CEILING)) && q=$QUEUE_CEILING
	fi
	((q > cap)) && q=$cap
	((q < 1 << 20)) && q=$((1 << 20))
	echo $((q >> 20 << 20))
}

usage() {
	cat >&2 <<EOF
Usage: ${0##*/} [--cgroup PATH] [--pin-dir DIR] [--quiet] [--max-entries N]
               [--max-queue SIZE] [--max-tcp-mem SIZE]
               [--skip-ports LIST] [--skip-cgroup PATH]... [--cross-netns]

Load the sockops bypass and attach it to a cgroup v2.

  --cgroup PATH        cgroup v2 directory to attach to (default: the root
                       of the cgroup v2 mount); only its sockets are
                       accelerated
  --pin-dir DIR        bpffs directory for the pins (default:
                       \$SOCKOPS_PIN_DIR, else <bpffs>/sockops); one
                       directory per instance
  --quiet              no per-connection line in the trace buffer
  --max-entries N      capacity of the sockhash in sockets, two per
                       connection, $MAX_ENTRIES_MIN to $MAX_ENTRIES_MAX (default: MAX_ENTRIES
                       of bpf_sockops.h, 65536 as shipped); a loaded
                       sockhash keeps its size: unload.sh first
  --max-queue SIZE     per connection: go by TCP once the receiver would hold
                       more than SIZE unread, each message counted with 1 KiB
                       of overhead, until it has read everything (0: no
                       bound; auto, the default: from $(human_size "$(default_queue start)") (tcp_wmem[2]),
                       growing as the receiver reads to $(human_size "$(default_queue ceiling)"))
  --max-tcp-mem SIZE   per host: go by TCP once all TCP sockets together hold
                       SIZE of memory, or TCP is under memory pressure
                       (default: tcp_mem's low mark, below which TCP is
                       never refused memory: $(human_size $(($(tcp_mem 0) * PAGE_SIZE))) here; 0: no guard)
  --skip-ports LIST    comma-separated TCP ports (at most 64): a connection
                       whose local or remote port is listed stays on plain
                       TCP, e.g. a proxy that splices; "" empties the list
  --skip-cgroup PATH   leave the sockets created in cgroup v2 PATH, or below
                       it, on plain TCP (repeat for more, at most 16); with
                       the bypass attached at the root, this keeps one
                       service out
  --cross-netns        also redirect connections between two network
                       namespaces of this host (containers on a bridge);
                       loopback stays per namespace.  Their bytes then skip
                       netfilter, tc and any policy after the handshake
                       (README, "Containers").  Off by default
  -h, --help           this text

SIZE is a number of bytes with an optional K, M or G suffix (powers of 1024).
Run again on a loaded instance to change --quiet, --max-queue, --max-tcp-mem,
--cross-netns or a skip list in place; a skip list and --cross-netns apply
to new connections.
EOF
}

# For need_root's message, before the loop below consumes them.
readonly ARGS=("$@")

cgroup=
pin=
trace=1
cross_netns=0
skip_bits=0		# struct bypass_config's skip_lists: see listed_bits
max_queue=
max_tcp_mem=
skip_ports=()		# set by --skip-ports
skip_ports_given=0
skip_cgroups=()		# paths, from --skip-cgroup
entries_arg=
entries_set=0
while (($#)); do
	case $1 in
	--cgroup)	[[ $# -ge 2 ]] || { usage; exit 2; }; cgroup=$2; shift ;;
	--cgroup=*)	cgroup=${1#*=} ;;
	--pin-dir)	[[ $# -ge 2 ]] || { usage; exit 2; }; pin=$2; shift ;;
	--pin-dir=*)	pin=${1#*=} ;;
	--quiet)	trace=0 ;;
	--cross-netns)	cross_netns=1 ;;
	--max-entries)	[[ $# -ge 2 ]] || { usage; exit 2; }; entries_arg=$2; entries_set=1; shift ;;
	--max-entries=*) entries_arg=${1#*=}; entries_set=1 ;;
	--max-queue)	[[ $# -ge 2 ]] || { usage; exit 2; }; max_queue=$2; shift ;;
	--max-queue=*)	max_queue=${1#*=} ;;
	--max-tcp-mem)	[[ $# -ge 2 ]] || { usage; exit 2; }; max_tcp_mem=$2; shift ;;
	--max-tcp-mem=*) max_tcp_mem=${1#*=} ;;
	--skip-ports)	[[ $# -ge 2 ]] || { usage; exit 2; }
			IFS=, read -ra skip_ports <<<"$2"; skip_ports_given=1; shift ;;
	--skip-ports=*)	IFS=, read -ra skip_ports <<<"${1#*=}"; skip_ports_given=1 ;;
	--skip-cgroup)	[[ $# -ge 2 ]] || { usage; exit 2; }; skip_cgroups+=("$2"); shift ;;
	--skip-cgroup=*) skip_cgroups+=("${1#*=}") ;;
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
if [[ -z $max_queue || $max_queue == auto ]]; then
	max_queue=$(default_queue ceiling)
	queue_start=$(default_queue start)
	((queue_start > max_queue)) && queue_start=$max_queue
else
	max_queue=$(size_opt --max-queue "$max_queue")
	queue_start=$max_queue
fi
# The host guard, when --max-tcp-mem is not given: tcp_mem[0].  Above it a
# redirected message can be refused with ENOMEM once TCP enters memory
# pressure, which the redirect itself may cause (bpf_redir.c, tcp_mem_full()).
max_tcp_mem=$(size_opt --max-tcp-mem "$max_tcp_mem" $(($(tcp_mem 0) * PAGE_SIZE)))
# Ten digits at most, so that the comparison cannot overflow.
if ((entries_set)); then
	[[ $entries_arg =~ ^[0-9]{1,10}$ ]] &&
		((10#$entries_arg >= MAX_ENTRIES_MIN && 10#$entries_arg <= MAX_ENTRIES_MAX)) ||
		die "--max-entries $entries_arg: give a number of sockets from $MAX_ENTRIES_MIN to $MAX_ENTRIES_MAX"
	entries_arg=$((10#$entries_arg))
fi

need_root "${ARGS[@]}"
need_tools bpftool jq findmnt
for obj in "$SOCKOPS_OBJ" "$REDIR_OBJ" "$SOCKOPT_OBJ"; do
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

for port in "${skip_ports[@]}"; do
	[[ $port =~ ^[0-9]+$ ]] && ((10#$port >= 1 && 10#$port <= 65535)) ||
		die "--skip-ports: '$port' is not a TCP port (1-65535); give a comma-separated list, e.g. 80,443"
done
# The kernel's key for a cgroup is its ID, which is the inode number of its
# directory.  The root would skip everything: use unload.sh for that.
skip_cgroup_ids=()
for cg in "${skip_cgroups[@]}"; do
	[[ -d $cg && $(stat -f -c %T "$cg") == cgroup2fs ]] ||
		die "--skip-cgroup $cg is not a cgroup v2 directory (cgroup v2 is mounted on $cgroot)"
	[[ $(realpath "$cg") != "$(realpath "$cgroot")" ]] ||
		die "--skip-cgroup $cg is the root cgroup: that would skip every socket"
	skip_cgroup_ids+=("$(stat -c %i "$cg")")
done

# set_skip MAP KEYBYTES KEY...: make the skip hash MAP hold exactly the
# numbers KEY (ports or cgroup IDs); KEYBYTES is u32_bytes or u64_bytes.  A
# key that stays keeps its count of skipped sockets.  New keys go in before
# old ones go out, so that a key in both lists is never missing, even for
# a moment, from a loaded bypass.
set_skip() {
	local map=$1 keybytes=$2 key max
	local -A want=() have=()

	shift 2
	for key in "$@"; do
		want[$((10#$key))]=1
	done
	max=$(bpftool -j map show pinned "$map" | jq .max_entries)
	((${#want[@]} <= max)) ||
		die "${#want[@]} entries for ${map##*/}, which holds at most $max"
	for key in $(bpftool -j map dump pinned "$map" | jq -r '.[].formatted.key'); do
		have[$key]=1
	done
	for key in "${!want[@]}"; do
		[[ -n ${have[$key]:-} ]] ||
			bpftool map update pinned "$map" key $($keybytes "$key") \
				value $(u64_bytes 0) noexist
	done
	for key in "${!have[@]}"; do
		[[ -n ${want[$key]:-} ]] ||
			bpftool map delete pinned "$map" key $($keybytes "$key")
	done
}

# set_skip_lists DIR: apply --skip-ports and --skip-cgroup to the maps in
# DIR; a list not given on the command line is left as it is.
set_skip_lists() {
	if ((skip_ports_given)); then
		set_skip "$1/$PIN_SKIP_PORTS" u32_bytes "${skip_ports[@]}"
	fi
	if ((${#skip_cgroup_ids[@]})); then
		set_skip "$1/$PIN_SKIP_CGROUPS" u64_bytes "${skip_cgroup_ids[@]}"
	fi
}

# listed_bits DIR: the skip lists in DIR that have entries, as the bits of
# struct bypass_config's skip_lists: SKIP_LIST_PORTS 1, SKIP_LIST_CGROUPS 2.
listed_bits() {
	local bits=0

	(($(bpftool -j map dump pinned "$1/$PIN_SKIP_PORTS" | jq length))) &&
		bits=$((bits | 1))
	(($(bpftool -j map dump pinned "$1/$PIN_SKIP_CGROUPS" | jq length))) &&
		bits=$((bits | 2))
	echo "$bits"
}

# update_skip_lists DIR: set_skip_lists, with the config's bits set for
# every list that has entries before, during and after the change: a bit
# on for an empty list only costs a lookup, a bit off for a list with
# entries would let its connections through.
update_skip_lists() {
	skip_bits=$(listed_bits "$1")
	((skip_ports_given && ${#skip_ports[@]})) && skip_bits=$((skip_bits | 1))
	((${#skip_cgroup_ids[@]})) && skip_bits=$((skip_bits | 2))
	# write_config's arithmetic runs only with errexit off, as here.
	write_config || return
	set_skip_lists "$1"
	skip_bits=$(listed_bits "$1")
	write_config || return
}

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

# The kernel functions of struct bypass_config's woken_wake and waits[], in
# that order (enum wait_func in bpf_sockops.h).
readonly WAIT_SYMS="woken_wake_function sk_wait_data tcp_msg_wait_data tcp_bpf_recvmsg sk_stream_wait_memory"

# kernel_texts NAME...: "START END" of each kernel function NAME, a line
# each, in hex: its address in /proc/kallsyms and the next higher address
# there.  "0 0" for a name that is not there: inlined, or kallsyms hidden.
# /proc/kallsyms lists the kernel's own symbols in address order (the
# kernel sorts them at build time; modules follow), so the end is a few
# lines below the start (aliases share an address).  grep picks those
# lines: awk reading all of kallsyms takes seconds in an emulated guest,
# and GNU sort minutes.  The addresses are 16 hex digits, so awk compares
# them as strings.
kernel_texts() {
	local re

	re=$(printf '%s|' "$@")
	grep -E -A 8 " [tT] (${re%|})\$" /proc/kallsyms 2>/dev/null |
	awk -v names="$*" '
		BEGIN { n = split(names, want, " "); for (i = 1; i <= n; i++) idx[want[i]] = i }
		$1 == "--" { cur = ""; next }
		cur == "" && ($3 in idx) && !($3 in start) && $1 !~ /^0+$/ {
			cur = $3; start[cur] = $1; next
		}
		cur != "" && $1 > start[cur] { end[cur] = $1; cur = "" }
		END {
			for (i = 1; i <= n; i++)
				print (want[i] in end ? start[want[i]] " " end[want[i]] : "0 0")
		}'
}

# write_config: struct bypass_config (bpf_sockops.h), field by field in host
# byte order: __u32 trace, __u32 page_shift, __u64 max_queue, __u64
# max_tcp_mem, __u64 woken_wake, WAIT_FUNCS __u64 pairs, waits[], __u64
# queue_start, __u32 cross_netns and __u32 skip_lists.
write_config() {
	local shift=0 start end texts=()

	while (((1 << shift) < PAGE_SIZE)); do
		((shift++))
	done
	for start in "${wait_texts[@]}"; do
		texts+=($start)
	done
	# woken_wake_function: its address alone.
	texts=("${texts[0]}" "${texts[@]:2}")
	bpftool map update pinned "$pin/$PIN_CONFIG" key $(u32_bytes 0) \
		value hex $(uint_bytes 4 "$trace") $(uint_bytes 4 "$shift") \
		$(uint_bytes 8 "$max_queue") $(uint_bytes 8 "$max_tcp_mem") \
		$(for start in "${texts[@]}"; do uint_bytes 8 $((16#$start)); done) \
		$(uint_bytes 8 "$queue_start") \
		$(uint_bytes 4 "$cross_netns") $(uint_bytes 4 "$skip_bits")
}

# settings: the memory bounds in force, in words.
settings() {
	local q=none h=none

	((max_queue)) && q="$(human_size "$max_queue") per connection"
	((max_queue && queue_start < max_queue)) &&
		q="$(human_size "$queue_start") per connection, growing to $(human_size "$max_queue") as its reader reads"
	((max_tcp_mem)) && h="$(human_size "$max_tcp_mem") of TCP memory"
	echo "queue bound: $q; host guard: $h$( ((cross_netns)) && echo "; across namespaces (--cross-netns)")"
}

# The ranges write_config stores, read once: kallsyms is long (a second or
# more under an emulated guest), and write_config may run three times.
mapfile -t wait_texts < <(kernel_texts $WAIT_SYMS)
# And the host's byte order, asked once (uint_bytes runs in subshells).
host_little_endian

# Already loaded?  Done if the three cgroup programs are attached where asked
# (refuse if elsewhere, or if --max-entries asks for another capacity: a
# live sockhash cannot be resized); clear a half-done load left by a crash.
if [[ -e $pin ]]; then
	where=$(attached_cgroups "$(prog_id "$pin/$PIN_SOCKOPS")")
	rwhere=$(attached_cgroups "$(prog_id "$pin/$PIN_RELEASE")")
	owhere=$(attached_cgroups "$(prog_id "$pin/$PIN_SOCKOPT")")
	if [[ -n $where && $rwhere == "$where" && $owhere == "$where" ]]; then
		[[ $where == "$cgroup" ]] ||
			die "already loaded from $pin and attached to $where; run unload.sh first, or use another --pin-dir"
		have=$(bpftool -j map show pinned "$pin/$PIN_MAP" | jq .max_entries)
		[[ -z $entries_arg || $have == "$entries" ]] ||
			die "already loaded from $pin with a sockhash of $have entries; run unload.sh first to load it with --max-entries $entries"
		skip_bits=$(listed_bits "$pin")
		write_config >/dev/null ||
			die "cannot update the settings in $pin/$PIN_CONFIG"
		if ((skip_ports_given || ${#skip_cgroups[@]})); then
			update_skip_lists "$pin" >/dev/null
			info "skip lists updated; they apply to new connections"
		fi
		info "already loaded: $pin, attached to $cgroup, sockhash of $have entries; $(settings)"
		exit 0
	fi
	warn "removing the incomplete load in $pin"
	"$TOP_DIR/unload.sh" --pin-dir "$pin" >/dev/null
fi

# A program attached without "multi" (exclusively) forbids any other of its
# type; say so before changing anything.
excl=$(bpftool -j cgroup show "$cgroup" 2>/dev/null |
	jq -r '.[] | select((.attach_type | test("sock_ops|sock_release|setsockopt")) and .attach_flags != "multi") | "\(.attach_type) program \(.name) (id \(.id))"')
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
run "load $SOCKOPT_OBJ" \
	bpftool prog load "$SOCKOPT_OBJ" "$pin/$PIN_SOCKOPT" "${reuse[@]}"
run "write the settings to $pin/$PIN_CONFIG" write_config
# A fresh load has empty skip lists: there is nothing more to write
# unless some were given.
if ((skip_ports_given || ${#skip_cgroup_ids[@]})); then
	run "fill the skip lists" update_skip_lists "$pin"
fi
run "attach $PIN_REDIR as sk_msg_verdict" \
	bpftool prog attach pinned "$pin/$PIN_REDIR" sk_msg_verdict pinned "$pin/$PIN_MAP"
run "attach $PIN_RELEASE to $cgroup" \
	bpftool cgroup attach "$cgroup" cgroup_inet_sock_release pinned "$pin/$PIN_RELEASE" multi
run "attach $PIN_SOCKOPT to $cgroup" \
	bpftool cgroup attach "$cgroup" cgroup_setsockopt pinned "$pin/$PIN_SOCKOPT" multi
run "attach $PIN_SOCKOPS to $cgroup" \
	bpftool cgroup attach "$cgroup" cgroup_sock_ops pinned "$pin/$PIN_SOCKOPS" multi

info "loaded: pins in $pin, sock_ops attached to $cgroup, sockhash of $entries entries; $(settings)"
if ((max_queue)) && ! kernel_counts_redirected; then
	warn "the queue bound may not work on this kernel ($(kernel_version)): it reads the receiver's sk_rmem_alloc, which counts redirected bytes only since Linux 6.13, 6.12.8 and 6.1.123; without it a receiver that stops reading lets its sender queue up to the host guard"
fi
