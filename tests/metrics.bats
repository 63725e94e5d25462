#!/usr/bin/env bats
# SPDX-License-Identifier: GPL-2.0
#
# Metrics: status.sh --prom is valid Prometheus text format (promtool, from
# the prometheus package, says so) and carries the bypass's own numbers.

BASE_PORT=28500
load helpers

setup() {
	common_setup
	command -v promtool >/dev/null || skip "promtool is missing: sudo ./deps.sh test"
	[[ -x $TOP/bench/connhold ]] || skip "bench/connhold is not built; run make"
}

# prom_check FILE: promtool's verdict; it prints nothing when all is well,
# and names each problem otherwise (lint included).
prom_check() {
	local out rc=0

	out=$(promtool check metrics <"$1" 2>&1) || rc=$?
	echo "promtool (exit $rc): $out"
	((rc == 0)) && [[ -z $out ]]
}

# sample NAME [LABELS]: the value of one sample, labels after pin_dir.
sample() {
	local want="${1}{pin_dir=\"$SOCKOPS_PIN_DIR\"${2:+,$2}}"

	awk -v w="$want" '$1 == w { print $2; n++ } END { exit n != 1 }' "$TMP/prom"
}

@test "status.sh --prom passes promtool check metrics and carries the counters, fill and capacity" {
	local key value

	load_bypass --quiet --max-entries 4096
	# One checksummed transfer, then three connections held open.
	spawn xfer-recv "$XFER" recv -b 127.0.0.1 -p "$PORT"
	wait_port "$PORT"
	in_cg "$XFER" send -a 127.0.0.1 -p "$PORT" -B 5000000 -R 3000000
	wait "$LAST_PID"
	# connhold holds them until its stdin ends: a sleep's, here.
	spawn hold bash -c 'exec "$1" hold -n 3 < <(exec sleep 600)' _ "$TOP/bench/connhold"
	for _ in $(seq 100); do
		grep -q '"conns":3,' "$TMP/hold.out" && break
		sleep 0.05
	done

	"$TOP/status.sh" --prom >"$TMP/prom"
	cat "$TMP/prom"
	prom_check "$TMP/prom"
	(($(sample sockops_loaded) == 1))
	(($(sample sockops_map_capacity) == 4096))
	(($(sample sockops_map_sockets) == 6))
	(($(sample sockops_sockets_inserted_total) == 8))
	(($(sample sockops_sockets_removed_total) == 2))
	(($(sample sockops_insert_map_full_total) == 0))
	(($(sample sockops_bytes_redirected_total) == 5000000 + 24 + 3000000))
	(($(sample sockops_bytes_passed_total) == 0))

	(($(sample sockops_on_tcp) == 0))
	(($(sample sockops_cross_netns) == 0))
	(($(sample sockops_option_sockets) == 0))
	# Every counter of struct bypass_stats is there, found by name, with
	# its HELP and TYPE: fallback_<reason> and return_<reason> as one
	# counter each with a reason label, every other field as
	# sockops_<field>_total.
	"$TOP/status.sh" --json >"$TMP/status.json"
	while read -r key value; do
		if [[ $key == fallback_* ]]; then
			(($(sample sockops_fallbacks_total "reason=\"${key#fallback_}\"") == value))
			grep -qx "# TYPE sockops_fallbacks_total counter" "$TMP/prom"
		elif [[ $key == return_* ]]; then
			(($(sample sockops_returns_total "reason=\"${key#return_}\"") == value))
			grep -qx "# TYPE sockops_returns_total counter" "$TMP/prom"
		else
			(($(sample "sockops_${key}_total") == value))
			grep -qx "# TYPE sockops_${key}_total counter" "$TMP/prom"
			grep -q "^# HELP sockops_${key}_total ." "$TMP/prom"
		fi
	done < <(jq -r '.counters | to_entries[] | "\(.key) \(.value)"' "$TMP/status.json")
	# Nothing else: the families are the six gauges and the counters.
	(($(grep -c '^# TYPE' "$TMP/prom") == 6 + $(jq '.counters | keys |
		(map(select(startswith("fallback_") or startswith("return_") | not)) | length) +
		(if any(startswith("fallback_")) then 1 else 0 end) +
		(if any(startswith("return_")) then 1 else 0 end)' "$TMP/status.json")))
}

@test "status.sh --prom with nothing loaded: sockops_loaded 0, still valid, exit 1; labels are escaped" {
	run "$TOP/status.sh" --prom
	[[ $status -eq 1 ]]
	echo "$output" >"$TMP/prom"
	prom_check "$TMP/prom"
	(($(sample sockops_loaded) == 0))
	# A quote and a backslash in the pin directory's name.
	SOCKOPS_PIN_DIR=$BPFFS/'we"ird\dir'
	run "$TOP/status.sh" --prom
	[[ $status -eq 1 ]]
	echo "$output" >"$TMP/prom"
	cat "$TMP/prom"
	prom_check "$TMP/prom"
	grep -qF 'sockops_loaded{pin_dir="'"$BPFFS"'/we\"ird\\dir"} 0' "$TMP/prom"
}

@test "the textfile collector recipe in docs/operations.md writes the metrics atomically" {
	local dir=$TMP/textfile recipe

	load_bypass --quiet
	mkdir "$dir"
	# The recipe, as the document gives it, with our directory.
	recipe=$(sed -n '/^# textfile recipe: begin/,/^# textfile recipe: end/p' "$TOP/docs/operations.md")
	[[ -n $recipe ]]
	recipe=${recipe//\/var\/lib\/prometheus\/node-exporter/$dir}
	recipe=${recipe//\/usr\/local\/sbin\/sockops-status/$TOP\/status.sh}
	echo "$recipe"
	bash -c "$recipe"
	[[ -z $(find "$dir" -name '*.tmp*') ]]
	[[ -f $dir/sockops.prom ]]
	cp "$dir/sockops.prom" "$TMP/prom"
	prom_check "$TMP/prom"
	(($(sample sockops_loaded) == 1))
}
