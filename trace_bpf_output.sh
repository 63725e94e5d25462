#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# trace_bpf_output.sh - stream the bypass's per-connection lines from the
# kernel trace buffer, one line per socket put into the sockhash:
#
#   iperf3-9516 [001] ..s1. 22500.634137: bpf_trace_printk: <<< ipv4 op = 5, port 5001 --> 46506
#
# op 4 is the connecting side (BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB), op 5 the
# accepting side (BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB); ports are local -->
# remote, in host byte order.  Lines appear only while the bypass is loaded
# without --quiet.  The trace buffer is global: reading trace_pipe consumes
# it, so run one reader at a time.  Ctrl-C stops.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

if [[ ${1:-} == -h || ${1:-} == --help ]]; then
	echo "Usage: ${0##*/}    (stream the bypass's trace lines; Ctrl-C stops)" >&2
	exit 0
fi
need_root
need_tools findmnt grep

readonly TRACEFS=$(tracefs_dir)
readonly PIPE=$TRACEFS/trace_pipe
# Another tool may have switched the ring buffer off; bpf_printk writes
# nothing then.  Say so rather than switch it on behind its back.
[[ $(<"$TRACEFS/tracing_on") == 1 ]] ||
	warn "tracing is off ($TRACEFS/tracing_on is 0): no line will appear until it is on again (echo 1 > $TRACEFS/tracing_on)"
# The kernel lets one process read trace_pipe at a time.
{ : <"$PIPE"; } 2>/dev/null ||
	die "cannot open $PIPE: another reader has it (another trace_bpf_output.sh, cat, or bpftool prog tracelog?)"
# grep runs in the background and we wait for it: bash runs a trap only
# after the foreground command returns, and a read of an idle trace_pipe
# never returns.  So a TERM from a parent stops the reader at once.
grep --line-buffered '<<< ipv[46] op' "$PIPE" &
reader=$!
trap 'kill "$reader" 2>/dev/null; exit 0' INT TERM
wait "$reader"
