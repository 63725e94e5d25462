#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# status.sh [--pin-dir DIR] [--json | --prom] [--walk] - is the bypass on,
# where, how full is its map, and is it working?  Read-only: it mounts
# nothing and changes nothing.
#
# Fast at any map size: sockops_stat reads the pins, the counters and the
# cgroup attachments with a few bpf() calls, and the number of sockets in
# the map comes from the counters (sockets_inserted - sockets_removed), not
# from walking it.  --walk counts the entries one by one as well, to check.
#
# Exits 0 when the bypass is loaded, 1 when it is not.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

readonly STAT=$TOP_DIR/sockops_stat
# The text output warns from this fill on; the sockhash refuses inserts at
# 100%.
readonly WARN_FILL=0.9

usage() {
	cat >&2 <<EOF
Usage: ${0##*/} [--pin-dir DIR] [--json | --prom] [--walk]

Show whether the sockops bypass is loaded, where it is attached, how full
its sockhash is and its counters (summed over CPUs).

  --pin-dir DIR   the pin directory given to load.sh (default:
                  \$SOCKOPS_PIN_DIR, else <bpffs>/sockops)
  --json          one JSON object, for scripts and monitoring
  --prom          Prometheus text format, for node_exporter's textfile
                  collector (write to a temporary file, then rename it)
  --walk          also count the sockhash's entries one by one (slow at a
                  million entries) and compare them with the counters
  -h, --help      this text
EOF
}

pin=${SOCKOPS_PIN_DIR:-}
format=text
walk=()
while (($#)); do
	case $1 in
	--pin-dir)	[[ $# -ge 2 ]] || { usage; exit 2; }; pin=$2; shift ;;
	--pin-dir=*)	pin=${1#*=} ;;
	--json)		format=json ;;
	--prom)		format=prom ;;
	--walk)		walk=(--walk) ;;
	-h|--help)	usage; exit 0 ;;
	*)		echo "${0##*/}: unknown option: $1" >&2; usage; exit 2 ;;
	esac
	shift
done

need_root
need_tools jq
[[ -x $STAT ]] || die "$STAT not found: build it first with 'make'"

# Read-only: with no bpffs mounted nothing can be loaded, so do not mount
# one (and do not run findmnt unless needed: this is called often).
if [[ -z $pin ]]; then
	bpffs=$(findmnt -n -t bpf -o TARGET | head -n 1)
	pin=${bpffs:-/sys/fs/bpf}/sockops
fi

raw=$("$STAT" "${walk[@]}" "$pin") || die "cannot read the bypass's state in $pin"

# One jq for everything (each start of jq costs tens of milliseconds): build
# the status object, print it in the format asked for, and exit 1 if the
# bypass is not loaded.
# Whether this kernel counts redirected bytes in the receiver's memory,
# which the queue bound reads (see load.sh).
counted=false
kernel_counts_redirected && counted=true

exec jq -r --arg format "$format" --argjson warn_fill "$WARN_FILL" \
	--argjson counted "$counted" '
	def status:
		if .programs.sock_ops == null or .map == null or .counters == null then
			{loaded: false, pin_dir}
		else
			(.counters.sockets_inserted - (.counters.sockets_removed // 0)) as $n |
			# Connection directions on TCP now: every fallback, less
			# the returns and those that closed on TCP (struct
			# bypass_stats).
			(.counters | [to_entries[] | select(.key | startswith("fallback_")) | .value] | add // 0) as $fell |
			(.counters | [to_entries[] | select(.key | startswith("return_")) | .value] | add // 0) as $back |
			{
				loaded: (.cgroups | length > 0),
				pin_dir,
				cgroups,
				programs,
				map: ({name: .map.name, id: .map.id, sockets: $n,
				       max_entries: .map.max_entries,
				       fill: ($n / .map.max_entries),
				       full: ($n >= .map.max_entries),
				       insert_map_full: (.counters.insert_map_full // 0)} +
				      if .map.walked != null then {walked: .map.walked} else {} end),
				trace: (.config.trace == 1),
				cross_netns: (.config.cross_netns == 1),
				config: (.config + {queue_bound_works: $counted}),
				tcp_mem_now: (.tcp_mem_pages * .page_size),
				tcp_pressure: (if .tcp_pressure < 0 then null else .tcp_pressure == 1 end),
				backlog_now: ((.backlog.units // 0) * 65536),
				on_tcp: ([$fell - $back - (.counters.closed_on_tcp // 0), 0] | max),
				option_sockets: (.opt_gate.sockets // 0),
				skip_ports: (.skip_ports | sort_by(.key) | map({port: .key, sockets})),
				skip_cgroups: (.skip_cgroup_paths as $p | .skip_cgroups | sort_by(.key) |
					map({id: .key, path: $p[.key | tostring], sockets})),
				counters,
				warnings: [
					if $n >= .map.max_entries then
						"the sockhash is full (\($n) of \(.map.max_entries) sockets): new connections use plain TCP; load with a larger --max-entries"
					elif $n >= .map.max_entries * $warn_fill then
						"the sockhash is \($n * 100 / .map.max_entries | floor)% full (\($n) of \(.map.max_entries) sockets)"
					else empty end,
					if (.cgroups | length > 0) and .release_cgroups != .cgroups then
						"bpf_release is not attached where bpf_sockmap is, so the socket count is wrong: run unload.sh, then load.sh"
					else empty end,
					if (.cgroups | length > 0) and .sockopt_cgroups != .cgroups then
						"bpf_sockopt is not attached where bpf_sockmap is, so options set after the handshake are not seen: run unload.sh, then load.sh"
					else empty end,
					if .map.walked != null and .map.walked != $n then
						"the sockhash holds \(.map.walked) sockets, the counters say \($n)"
					else empty end
				]
			}
		end;

	# Rounded to one decimal, as load.sh prints them (human_size).
	def size: if . >= 1073741824 then "\(. / 1073741824 * 10 + 0.5 | floor / 10) GiB"
		elif . >= 1048576 then "\(. / 1048576 * 10 + 0.5 | floor / 10) MiB"
		else "\(. / 1024 + 0.5 | floor) KiB" end;
	def n(c): "\(c) socket\(if c == 1 then "" else "s" end)";

	def text:
		if .map == null then
			"bypass:    not loaded (nothing pinned in \(.pin_dir))"
		else
			"bypass:    \(if .loaded then "loaded" else "pinned but not attached to any cgroup" end)",
			"pin dir:   \(.pin_dir)",
			"cgroup:    \(if .loaded then .cgroups | join(", ") else "-" end)",
			"programs:  \(.programs.sock_ops.name) (sock_ops, id \(.programs.sock_ops.id)), \(.programs.sock_release.name // "-") (sock_release, id \(.programs.sock_release.id // "-")), \(.programs.sk_msg.name // "-") (sk_msg, id \(.programs.sk_msg.id // "-")), \(.programs.setsockopt.name // "-") (setsockopt, id \(.programs.setsockopt.id // "-"))",
			"sockhash:  \(.map.name) (id \(.map.id)): \(.map.sockets) sockets now, capacity \(.map.max_entries) (\(.map.fill * 1000 | floor / 10)% full)" +
				if .map.walked != null then "; \(.map.walked) counted one by one" else "" end,
			"           \(.map.insert_map_full) inserts failed because it was full",
			"trace:     \(if .trace then "on (trace_bpf_output.sh)" else "off (--quiet)" end)",
			"netns:     \(if .cross_netns then "across namespaces, loopback per namespace (--cross-netns)" else "per namespace (no --cross-netns)" end)",
			"queue:     \(if (.config.max_queue // 0) > 0 then "\(if (.config.queue_start // .config.max_queue) < .config.max_queue then "\(.config.queue_start | size), growing to " else "" end)\(.config.max_queue | size) per connection (--max-queue)" else "no bound (--max-queue 0)" end)\(if .config.queue_bound_works then "" else "; this kernel may not count redirected bytes: see load.sh" end)",
			"on TCP:    \(.on_tcp) connection direction\(if .on_tcp == 1 then "" else "s" end) now (fell back \([.counters | to_entries[] | select(.key | startswith("fallback_")) | .value] | add // 0) times, came back \([.counters | to_entries[] | select(.key | startswith("return_")) | .value] | add // 0))",
			"options:   \(.option_sockets) socket\(if .option_sockets == 1 then "" else "s" end) now set an option the bypass cannot honour; their peers send by TCP (\(.counters.fallback_option // 0) connection directions so far)",
			"host:      \(if (.config.max_tcp_mem // 0) > 0 then "\(.config.max_tcp_mem | size) of TCP memory (--max-tcp-mem)" else "no guard (--max-tcp-mem 0)" end); now TCP holds \(.tcp_mem_now | size)\(if .tcp_pressure then " (under memory pressure: connections go by TCP)" else "" end), the bypass queues \(.backlog_now | size)",
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
			 "  \(.key | . + " " * ($w + 1 - length)) \(.value)"),
			(.warnings[] | "warning:   \(.)")
		end;

	# Prometheus text format: gauges for the map and the connections on
	# TCP now, one counter sockops_<field>_total per field of struct
	# bypass_stats, except the fallback_<reason> and return_<reason>
	# fields, which make one counter each with a reason label.
	def prom:
		def esc: gsub("\\\\"; "\\\\") | gsub("\n"; "\\n") | gsub("\""; "\\\"");
		def help: {
			sockets_inserted: "Established sockets put in the sockhash.",
			sockets_removed: "Sockets that left the sockhash.",
			insert_failed: "Established sockets that could not be put in the sockhash.",
			insert_map_full: "Established sockets not put in the sockhash because it was full.",
			sockets_skipped: "Established sockets left on TCP on purpose (SO_RCVLOWAT or another option set).",
			msgs_redirected: "sendmsg() calls redirected to the peer socket.",
			bytes_redirected: "Bytes of sendmsg() calls redirected to the peer socket.",
			msgs_passed: "sendmsg() calls of sockets in the sockhash sent by TCP.",
			bytes_passed: "Bytes of sendmsg() calls of sockets in the sockhash sent by TCP.",
			closed_on_tcp: "Sockets that closed while their sends went by TCP.",
			collisions: "Established sockets whose key another socket held: both stay on TCP.",
			repair_refused: "Sockets made ESTABLISHED by TCP_REPAIR, never put in the sockhash.",
			options_set: "Sockets in the sockhash that set an option the bypass cannot honour, after the handshake.",
			options_untracked: "Of those, sockets not tracked because opt_socks was full: their peers kept redirecting."
		};
		def metric($name; $type; $help; $samples):
			"# HELP sockops_\($name) \($help)",
			"# TYPE sockops_\($name) \($type)",
			($samples[] | "sockops_\($name){\(.l)} \(.v)");
		"pin_dir=\"\(.pin_dir | esc)\"" as $l |
		metric("loaded"; "gauge"; "1 if the bypass is attached to a cgroup, else 0.";
		       [{l: $l, v: (if .loaded then 1 else 0 end)}]),
		if .map == null then empty else
			metric("map_capacity"; "gauge";
			       "Capacity of the sockhash in sockets (load.sh --max-entries).";
			       [{l: $l, v: .map.max_entries}]),
			metric("map_sockets"; "gauge";
			       "Sockets in the sockhash now, two per bypassed connection.";
			       [{l: $l, v: .map.sockets}]),
			metric("cross_netns"; "gauge";
			       "1 if connections between network namespaces are redirected (load.sh --cross-netns), else 0.";
			       [{l: $l, v: (if .cross_netns then 1 else 0 end)}]),
			metric("on_tcp"; "gauge";
			       "Connection directions whose sends go by TCP now: fell back, not back yet.";
			       [{l: $l, v: .on_tcp}]),
			metric("option_sockets"; "gauge";
			       "Open sockets that set an option the bypass cannot honour: their peers send by TCP.";
			       [{l: $l, v: .option_sockets}]),
			(.counters | to_entries[] |
				select(.key | (startswith("fallback_") or startswith("return_")) | not) |
				metric("\(.key)_total"; "counter";
				       help[.key] // "Counter \(.key) of struct bypass_stats, summed over CPUs.";
				       [{l: $l, v: .value}])),
			(.counters | to_entries | map(select(.key | startswith("fallback_"))) |
				select(length > 0) |
				metric("fallbacks_total"; "counter";
				       "Connection directions that fell back to TCP, by reason (struct bypass_stats fallback_<reason>).";
				       map({l: "\($l),reason=\"\(.key | ltrimstr("fallback_") | esc)\"", v: .value}))),
			(.counters | to_entries | map(select(.key | startswith("return_"))) |
				select(length > 0) |
				metric("returns_total"; "counter";
				       "Connection directions that came back to the bypass after a fallback, by the fallback'"'"'s reason (struct bypass_stats return_<reason>).";
				       map({l: "\($l),reason=\"\(.key | ltrimstr("return_") | esc)\"", v: .value})))
		end;

	status |
	(if $format == "json" then tojson elif $format == "prom" then prom else text end),
	(if .loaded then empty else "" | halt_error(1) end)
' <<<"$raw"
