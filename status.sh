#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# status.sh [--pin-dir DIR] [--json] - is the bypass on, where, and is it
# working?  Read-only: it mounts nothing and changes nothing.
#
# Exits 0 when the bypass is loaded, 1 when it is not.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

usage() {
	cat >&2 <<EOF
Usage: ${0##*/} [--pin-dir DIR] [--json]

Show whether the sockops bypass is loaded, where it is attached, the sockets
in its map and its counters (summed over CPUs).

  --pin-dir DIR   the pin directory given to load.sh (default:
                  \$SOCKOPS_PIN_DIR, else <bpffs>/sockops)
  --json          one JSON object, for scripts and monitoring
  -h, --help      this text
EOF
}

pin=${SOCKOPS_PIN_DIR:-}
json=0
while (($#)); do
	case $1 in
	--pin-dir)	[[ $# -ge 2 ]] || { usage; exit 2; }; pin=$2; shift ;;
	--pin-dir=*)	pin=${1#*=} ;;
	--json)		json=1 ;;
	-h|--help)	usage; exit 0 ;;
	*)		echo "${0##*/}: unknown option: $1" >&2; usage; exit 2 ;;
	esac
	shift
done

need_root
need_tools bpftool jq findmnt

# Read-only: with no bpffs mounted nothing can be loaded, so do not mount one.
if [[ -z $pin ]]; then
	bpffs=$(findmnt -n -t bpf -o TARGET | head -n 1)
	pin=${bpffs:-/sys/fs/bpf}/sockops
fi

sockops_id=$(prog_id "$pin/$PIN_SOCKOPS")
if [[ -z $sockops_id || ! -e $pin/$PIN_MAP ]]; then
	if ((json)); then
		jq -cn --arg pin "$pin" '{loaded: false, pin_dir: $pin}'
	else
		echo "bypass:    not loaded (nothing pinned in $pin)"
	fi
	exit 1
fi

# skip_list MAP: a skip hash as [{key, sockets}], [] if not pinned (a load
# older than the skip lists).
skip_list() {
	bpftool -j map dump pinned "$1" 2>/dev/null |
		jq -c '[.[].formatted | {key, sockets: .value}] | sort_by(.key)' ||
		echo '[]'
}

# The skip cgroups by ID, each with its path if it still exists (the ID is
# the inode number of its directory).
skip_cgroups=$(skip_list "$pin/$PIN_SKIP_CGROUPS")
cgroot=$(findmnt -n -t cgroup2 -o TARGET | head -n 1)
paths='{}'
for id in $(jq -r '.[].key' <<<"$skip_cgroups"); do
	path=$(find "$cgroot" -type d -inum "$id" -print -quit 2>/dev/null || true)
	paths=$(jq -c --arg id "$id" --arg p "$path" '. + {($id): $p}' <<<"$paths")
done

# Gather everything into one JSON object; the text form is printed from it.
status=$(
	jq -cn \
		--arg pin "$pin" \
		--argjson sockops "$(bpftool -j prog show pinned "$pin/$PIN_SOCKOPS")" \
		--argjson redir "$(bpftool -j prog show pinned "$pin/$PIN_REDIR" 2>/dev/null || echo null)" \
		--argjson map "$(bpftool -j map show pinned "$pin/$PIN_MAP")" \
		--argjson sockets "$(bpftool -j map dump pinned "$pin/$PIN_MAP" | jq length)" \
		--argjson stats "$(bpftool -j map dump pinned "$pin/$PIN_STATS")" \
		--argjson config "$(bpftool -j map dump pinned "$pin/$PIN_CONFIG")" \
		--argjson page "$(getconf PAGESIZE)" \
		--argjson backlog "$(bpftool -j map dump pinned "$pin/$PIN_BACKLOG")" \
		--argjson tcp_pages "$(awk '/^TCP:/ { print $NF }' /proc/net/sockstat)" \
		--argjson counted "$(kernel_counts_redirected && echo true || echo false)" \
		--argjson cgroups "$(attached_cgroups "$sockops_id" | jq -R . | jq -s .)" \
		--argjson skip_ports "$(skip_list "$pin/$PIN_SKIP_PORTS")" \
		--argjson skip_cgroups "$skip_cgroups" \
		--argjson paths "$paths" \
		'{
			loaded: ($cgroups | length > 0),
			pin_dir: $pin,
			cgroups: $cgroups,
			programs: {
				sock_ops: {name: $sockops.name, id: $sockops.id},
				sk_msg: (if $redir then {name: $redir.name, id: $redir.id} else null end)
			},
			map: {name: $map.name, id: $map.id, sockets: $sockets,
			      max_entries: $map.max_entries},
			trace: ($config[0].formatted.value.trace == 1),
			config: ($config[0].formatted.value | {
				max_queue,
				max_tcp_mem,
				queue_bound_works: $counted
			}),
			tcp_mem_now: ($tcp_pages * $page),
			backlog_now: ($backlog[0].formatted.value.units * 65536),
			skip_ports: ($skip_ports | map({port: .key, sockets})),
			skip_cgroups: ($skip_cgroups | map({id: .key,
				path: ($paths[.key | tostring] | select(. != "") // null),
				sockets})),
			counters: ($stats[0].formatted.values | map(.value) |
				   reduce .[] as $cpu ({}; reduce ($cpu | keys_unsorted[]) as $k
					(.; .[$k] += $cpu[$k])))
		}'
)

if ((json)); then
	echo "$status"
else
	jq -r '
		def size: if . >= 1073741824 and . % 1073741824 == 0 then "\(. / 1073741824) GiB"
			elif . >= 1048576 then "\(. / 1048576 | . * 10 | floor / 10) MiB"
			else "\(. / 1024 | floor) KiB" end;
		"bypass:    \(if .loaded then "loaded" else "pinned but not attached to any cgroup" end)",
		"pin dir:   \(.pin_dir)",
		"cgroup:    \(if .loaded then .cgroups | join(", ") else "-" end)",
		"programs:  \(.programs.sock_ops.name) (sock_ops, id \(.programs.sock_ops.id)), \(.programs.sk_msg.name // "-") (sk_msg, id \(.programs.sk_msg.id // "-"))",
		"sockhash:  \(.map.name) (id \(.map.id)): \(.map.sockets) sockets now, capacity \(.map.max_entries)",
		"trace:     \(if .trace then "on (trace_bpf_output.sh)" else "off (--quiet)" end)",
		"queue bound: \(if .config.max_queue > 0 then "\(.config.max_queue | size) per connection" else "none (--max-queue 0)" end)\(if .config.queue_bound_works then "" else " (this kernel may not count redirected bytes: see load.sh)" end)",
		"host guard:  \(if .config.max_tcp_mem > 0 then "\(.config.max_tcp_mem | size) of TCP memory" else "none (--max-tcp-mem 0)" end) (now: TCP holds \(.tcp_mem_now | size), the bypass queues \(.backlog_now | size))",
		def n(c): "\(c) socket\(if c == 1 then "" else "s" end)";
		if (.skip_ports | length) + (.skip_cgroups | length) == 0 then
			"skip:      none"
		else
			(select(.skip_ports | length > 0) |
			 "skip:      ports " + (.skip_ports |
				map("\(.port) (\(n(.sockets)))") | join(", "))),
			(.skip_cgroups[] |
			 "skip:      cgroup \(.path // "(gone)") (id \(.id)): \(n(.sockets))")
		end,
		"counters:",
		(.counters | (keys | map(length) | max) as $w | to_entries[] |
		 "  \(.key | . + " " * ($w + 1 - length)) \(.value)")
	' <<<"$status"
fi
jq -e .loaded >/dev/null <<<"$status"
