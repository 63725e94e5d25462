#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# check.sh - prove the objects pass the kernel's verifier, the way load.sh
# loads them, without attaching anything: load into a temporary bpffs
# directory, report, remove it.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"

readonly OBJ_DIR=${SOCKOPS_OBJ_DIR:-$TOP_DIR}

need_root
need_tools bpftool jq findmnt

# bpffs refuses names with a dot, so no mktemp template here.
tmp=$(bpffs_dir)/sockops-check-$$
mkdir "$tmp"
cleanup() { rm -f "$tmp"/*; rmdir "$tmp"; }
trap cleanup EXIT

# bpf_sockops.o holds two programs: loadall pins each under its name.
bpftool prog loadall "$OBJ_DIR/bpf_sockops.o" "$tmp" pinmaps "$tmp"
mapfile -t reuse < <(reuse_map_args "$tmp")
bpftool prog load "$OBJ_DIR/bpf_redir.o" "$tmp/$PIN_REDIR" "${reuse[@]}"
bpftool prog load "$OBJ_DIR/bpf_sockopt.o" "$tmp/$PIN_SOCKOPT" "${reuse[@]}"
for p in "$PIN_SOCKOPS" "$PIN_RELEASE" "$PIN_REDIR" "$PIN_SOCKOPT"; do
	bpftool -j prog show pinned "$tmp/$p" |
		jq -r '"verifier: ok  \(.name) (\(.type)): \(.bytes_xlated) bytes xlated, \(.bytes_jited) jited, maps \(.map_ids)"'
done
