# SPDX-License-Identifier: GPL-2.0
# common.sh - what the scripts share.  Sourced, never run.
#
# Finds bpffs, tracefs and cgroup v2 (mounting bpffs and tracefs when they
# are missing), checks for root and tools once, and knows where our pins
# live.  Nothing here changes state except the two mounts.

# The directory of the repo, for the objects and the other scripts.
readonly TOP_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# Names of what load.sh pins inside the pin directory.
readonly PIN_MAP=sock_ops_map
readonly PIN_STATS=stats
readonly PIN_CONFIG=config
readonly PIN_PEERS=peer_keys
readonly PIN_BACKLOG=backlog
readonly PIN_SOCKOPS=bpf_sockmap
readonly PIN_RELEASE=bpf_release
readonly PIN_REDIR=bpf_redir
readonly PIN_SKIP_PORTS=skip_ports
readonly PIN_SKIP_CGROUPS=skip_cgroups
readonly PIN_COLLIDED=collided
readonly PIN_SOCKOPT=bpf_sockopt
readonly PIN_OPT_SOCKS=opt_socks
readonly PIN_OPT_GATE=opt_gate
# load.sh creates the sockhash here, then loads bpf_sockops.o onto it.
readonly PIN_MAP_NEW=sock_ops_map_new
# Every map of bpf_maps.h: bpf_sockops.o creates and pins them all, and
# bpf_redir.o and bpf_sockopt.o must reuse each one, or libbpf would create
# a second copy.
readonly PIN_MAPS=("$PIN_MAP" "$PIN_PEERS" "$PIN_STATS" "$PIN_CONFIG"
	"$PIN_BACKLOG" "$PIN_SKIP_PORTS" "$PIN_SKIP_CGROUPS" "$PIN_COLLIDED"
	"$PIN_OPT_SOCKS" "$PIN_OPT_GATE")

die()  { echo "${0##*/}: error: $*" >&2; exit 1; }
warn() { echo "${0##*/}: warning: $*" >&2; }
info() { echo "${0##*/}: $*"; }

need_root() {
	[[ $EUID -eq 0 ]] ||
		die "must be run as root (BPF programs and cgroup attachments need CAP_SYS_ADMIN); try: sudo $0 $*"
}

# The Debian/Ubuntu package that provides a tool, for error messages.
tool_pkg() {
	case $1 in
	bpftool)	echo "bpftool (Ubuntu: linux-tools-common linux-tools-\$(uname -r))" ;;
	ip)		echo iproute2 ;;
	findmnt|mount)	echo util-linux ;;
	gnuplot)	echo gnuplot-nox ;;
	clang)		echo clang ;;
	*)		echo "$1" ;;
	esac
}

# need_tools TOOL...: die naming every missing tool and its package.
need_tools() {
	local t missing=()

	for t in "$@"; do
		command -v "$t" >/dev/null 2>&1 || missing+=("$t (package: $(tool_pkg "$t"))")
	done
	((${#missing[@]} == 0)) && return 0
	die "missing tool(s): ${missing[*]}; install them or run: sudo make deps"
}

# Print the bpffs mount point, mounting one on /sys/fs/bpf if there is none.
bpffs_dir() {
	local dir

	dir=$(findmnt -n -t bpf -o TARGET | head -n 1)
	if [[ -z $dir ]]; then
		dir=/sys/fs/bpf
		mkdir -p "$dir"
		mount -t bpf bpf "$dir" || die "cannot mount bpffs on $dir"
		info "mounted bpffs on $dir" >&2
	fi
	echo "$dir"
}

# Print the tracefs mount point, mounting it if needed.
tracefs_dir() {
	local dir

	dir=$(findmnt -n -t tracefs -o TARGET | head -n 1)
	if [[ -z $dir ]]; then
		dir=/sys/kernel/tracing
		mount -t tracefs tracefs "$dir" 2>/dev/null ||
			die "cannot mount tracefs on $dir"
	fi
	echo "$dir"
}

# Print the cgroup v2 mount point: /sys/fs/cgroup on a unified host,
# /sys/fs/cgroup/unified on a hybrid one.  Never guessed.
cgroup2_root() {
	local dir

	dir=$(findmnt -n -t cgroup2 -o TARGET | head -n 1)
	[[ -n $dir ]] ||
		die "no cgroup v2 mounted (findmnt -t cgroup2 is empty); sock_ops programs attach to a cgroup v2: mount one with 'mount -t cgroup2 none /sys/fs/cgroup'"
	echo "$dir"
}

# cgroup_remove DIR: remove the cgroup v2 directory DIR and those below it,
# deepest first, killing what still runs in them.  Only for cgroups the
# caller made, whose processes it started.  A killed process leaves its
# cgroup only once it has exited, so it retries for up to 10 s.
cgroup_remove() {
	local cg pid

	for _ in $(seq 100); do
		[[ -d $1 ]] || return 0
		while read -r cg; do
			for pid in $(cat "$cg/cgroup.procs" 2>/dev/null); do
				kill -9 "$pid" 2>/dev/null || true
			done
			rmdir "$cg" 2>/dev/null || true
		done < <(find "$1" -depth -type d 2>/dev/null)
		[[ -d $1 ]] || return 0
		sleep 0.1
	done
	return 1
}

# The pin directory: --pin-dir, else $SOCKOPS_PIN_DIR, else <bpffs>/sockops.
# It must lie on a bpffs.
pin_dir() {
	local dir=${1:-${SOCKOPS_PIN_DIR:-}}

	[[ -n $dir ]] || dir=$(bpffs_dir)/sockops
	echo "$dir"
}

# reuse_map_args DIR: bpftool's "map name M pinned DIR/M" for every map, one
# word a line, so that bpf_redir.o is loaded onto the maps pinned in DIR.
reuse_map_args() {
	local m

	for m in "${PIN_MAPS[@]}"; do
		printf '%s\n' map name "$m" pinned "$1/$m"
	done
}

# prog_id PINNED_PATH: the ID of a pinned program, or nothing.
prog_id() {
	[[ -e $1 ]] || return 0
	bpftool -j prog show pinned "$1" 2>/dev/null | jq -r '.id // empty'
}

# attached_cgroups PROG_ID: every cgroup that PROG_ID is attached to, one a
# line.  bpftool walks the whole cgroup v2 tree.
attached_cgroups() {
	[[ -n $1 ]] || return 0
	bpftool -j cgroup tree "$(cgroup2_root)" 2>/dev/null |
		jq -r --argjson id "$1" \
			'.[] | select(any(.programs[]; .id == $id)) | .cgroup'
}

# uint_bytes WIDTH N: the WIDTH bytes of the unsigned integer N in host byte
# order, as bpftool's "hex" map arguments want them.  No process per call:
# load.sh writes some fifty of them, and under an emulated guest (make
# vmtest) each fork and exec costs a tenth of a second or more.
uint_bytes() {
	local width=$1 n=$2 i byte bytes=()

	host_little_endian
	for ((i = 0; i < width; i++)); do
		printf -v byte '%02x' $(((n >> (8 * i)) & 0xff))
		if ((HOST_LE)); then
			bytes+=("$byte")
		else
			bytes=("$byte" "${bytes[@]}")
		fi
	done
	echo "${bytes[@]}"
}

# host_little_endian: set HOST_LE to 1 on a little-endian host, else 0; asked
# once.  od prints 1 for "\001\000" read as one 16-bit word on little endian.
host_little_endian() {
	[[ -n ${HOST_LE:-} ]] && return
	HOST_LE=0
	[[ $(printf '\001\000' | od -An -tu2 | tr -d ' ') == 1 ]] && HOST_LE=1
	return 0
}

# u32_bytes N, u64_bytes N: a __u32 or a __u64 for bpftool: "hex" and its
# bytes.
u32_bytes() {
	echo hex $(uint_bytes 4 "$1")
}

u64_bytes() {
	echo hex $(uint_bytes 8 "$1")
}

# parse_size SIZE: bytes in SIZE, a number with an optional K, M or G
# (powers of 1024; "64M", "64MiB" and "67108864" are all 64 MiB).
parse_size() {
	local n unit

	[[ $1 =~ ^([0-9]+)([KkMmGg]?)(i?[Bb])?$ ]] || return 1
	n=${BASH_REMATCH[1]}
	unit=${BASH_REMATCH[2],,}
	case $unit in
	k) n=$((n << 10)) ;;
	m) n=$((n << 20)) ;;
	g) n=$((n << 30)) ;;
	esac
	echo "$n"
}

# human_size BYTES: "64 MiB", "1.5 GiB", for messages.
human_size() {
	awk -v b="$1" 'BEGIN {
		split("B KiB MiB GiB TiB", u, " ")
		for (i = 1; b >= 1024 && i < 5; i++)
			b /= 1024
		printf (b == int(b) ? "%d %s\n" : "%.1f %s\n"), b, u[i]
	}'
}

# kernel_version: the upstream version the running kernel is built from,
# "6.1.192".  Debian's uname -r is an ABI name ("6.1.0-57-amd64"): its
# upstream version is in uname -v; Ubuntu's is in /proc/version_signature.
kernel_version() {
	local v

	if [[ -r /proc/version_signature ]]; then
		v=$(awk '{ print $NF }' /proc/version_signature)
	elif [[ $(uname -v) =~ Debian\ ([0-9]+\.[0-9]+\.[0-9]+) ]]; then
		v=${BASH_REMATCH[1]}
	else
		v=$(uname -r)
	fi
	[[ $v =~ ^[0-9]+\.[0-9]+(\.[0-9]+)? ]] && echo "${BASH_REMATCH[0]}"
}

# kernel_counts_redirected: true if the running kernel adds the bytes it
# redirects into a socket to that socket's sk_rmem_alloc, which bpf_redir's
# queue bound reads.  That came with "tcp_bpf: Charge receive socket buffer
# in bpf_tcp_ingress()" in Linux 6.13 and stable 6.12.8 and 6.1.123.  Other
# stable series may have it too; we cannot tell, so we say so.
kernel_counts_redirected() {
	local v maj min patch

	v=$(kernel_version)
	IFS=. read -r maj min patch <<<"$v"
	patch=${patch:-0}
	((maj > 6 || (maj == 6 && min >= 13))) && return 0
	((maj == 6 && min == 12 && patch >= 8)) && return 0
	((maj == 6 && min == 1 && patch >= 123)) && return 0
	return 1
}

# tcp_mem N: field N (0, 1, 2: min, pressure, max) of net.ipv4.tcp_mem, in
# pages, shared by every TCP socket of the host.
tcp_mem() {
	local mem

	read -r -a mem </proc/sys/net/ipv4/tcp_mem
	echo "${mem[$1]}"
}

# netns_wait_port NS PORT: wait up to 5 s until something listens on TCP
# PORT in network namespace NS; die if nothing does.
netns_wait_port() {
	for _ in $(seq 100); do
		[[ -n $(ip netns exec "$1" ss -Htln "sport = :$2") ]] && return 0
		sleep 0.05
	done
	die "nothing listens on port $2 in netns $1"
}
