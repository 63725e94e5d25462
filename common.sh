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
readonly PIN_SOCKOPS=bpf_sockmap
readonly PIN_RELEASE=bpf_release
readonly PIN_REDIR=bpf_redir
# load.sh creates the sockhash here, then loads bpf_sockops.o onto it.
readonly PIN_MAP_NEW=sock_ops_map_new
# Every map of bpf_maps.h: bpf_sockops.o creates and pins them all, and
# bpf_redir.o must reuse each one, or libbpf would create a second copy.
readonly PIN_MAPS=("$PIN_MAP" "$PIN_PEERS" "$PIN_STATS" "$PIN_CONFIG")

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

# u32_bytes N: the four bytes of a __u32 in host byte order, as bpftool's
# "hex" map arguments want them.
u32_bytes() {
	local n=$1 i bytes=()

	for i in 0 8 16 24; do
		bytes+=("$(printf '%02x' $(((n >> i) & 0xff)))")
	done
	# od prints 1 for "\001\000" read as one 16-bit word on little endian.
	if [[ $(printf '\001\000' | od -An -tu2 | tr -d ' ') != 1 ]]; then
		bytes=("${bytes[3]}" "${bytes[2]}" "${bytes[1]}" "${bytes[0]}")
	fi
	echo hex "${bytes[@]}"
}
