#!/usr/bin/env bats
# SPDX-License-Identifier: GPL-2.0
#
# The service: make install into a DESTDIR, the installed unit's own
# ExecStart and ExecStop command lines (systemd is not PID 1 here, so they
# are read from the unit file and run as systemd would: with the
# environment file's variables, $VAR split into words), a real transfer
# through what they loaded, and make uninstall, which leaves nothing.

BASE_PORT=29000
load helpers

PREFIX=/usr/local

setup() {
	common_setup
	DEST=$TMP/root
	LIBEXEC=$DEST$PREFIX/lib/sockops
	UNIT=$DEST$PREFIX/lib/systemd/system/sockops.service
	ENVFILE=$DEST/etc/default/sockops
}

# unit_value KEY: the value of KEY= in the installed unit.
unit_value() {
	sed -n "s/^$1=//p" "$UNIT"
}

# unit_run KEY: run the unit's KEY= command line as systemd does: the
# EnvironmentFile's assignments as the only environment (plus PATH), $VAR
# and ${VAR} replaced by their value, $VAR split at white space, ${VAR} as
# one word.  Paths in the unit are the installed ones: DESTDIR in front.
unit_run() {
	local line word name envfile
	local -a argv=() split

	line=$(unit_value "$1")
	envfile=$(unit_value EnvironmentFile)
	envfile=$DEST${envfile#-}
	# The environment file, read by bash in a clean environment.
	mapfile -t env < <(env -i bash -c 'set -a; source "$1"; env -0 |
		tr "\0" "\n" | grep -v "^\(PWD\|SHLVL\|_\)="' _ "$envfile")
	for word in $line; do
		if [[ $word =~ ^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$ ]]; then
			name=${BASH_REMATCH[1]}
			argv+=("$(env -i "${env[@]}" printenv "$name" || true)")
		elif [[ $word =~ ^\$([A-Za-z_][A-Za-z0-9_]*)$ ]]; then
			name=${BASH_REMATCH[1]}
			read -r -a split <<<"$(env -i "${env[@]}" printenv "$name" || true)"
			argv+=("${split[@]}")
		else
			argv+=("$word")
		fi
	done
	argv[0]=$DEST${argv[0]}
	echo "$1: ${argv[*]}"
	env -i PATH="$PATH" "${env[@]}" "${argv[@]}"
}

# files: everything under DESTDIR that is not a directory.
files() {
	(cd "$DEST" && find . ! -type d | sort)
}

@test "make install, the unit's ExecStart loads the bypass into our cgroup, ExecStop unloads it, make uninstall leaves nothing" {
	local sockops release n

	make -s -C "$TOP" install DESTDIR="$DEST" PREFIX="$PREFIX"
	files
	[[ $(files) == "./etc/default/sockops
.$PREFIX/lib/sockops/bpf_redir.o
.$PREFIX/lib/sockops/bpf_sockops.o
.$PREFIX/lib/sockops/bpf_sockopt.o
.$PREFIX/lib/sockops/common.sh
.$PREFIX/lib/sockops/load.sh
.$PREFIX/lib/sockops/sockops_stat
.$PREFIX/lib/sockops/status.sh
.$PREFIX/lib/sockops/trace_bpf_output.sh
.$PREFIX/lib/sockops/trace_lo_traffic.sh
.$PREFIX/lib/sockops/unload.sh
.$PREFIX/lib/systemd/system/sockops.service
.$PREFIX/sbin/sockops-load
.$PREFIX/sbin/sockops-status
.$PREFIX/sbin/sockops-unload" ]]
	cmp "$TOP/bpf_sockops.o" "$LIBEXEC/bpf_sockops.o"
	# The commands run the installed scripts, at their final path.
	grep -qx "exec $PREFIX/lib/sockops/status.sh \"\$@\"" "$DEST$PREFIX/sbin/sockops-status"
	[[ -x $DEST$PREFIX/sbin/sockops-status ]]
	# The unit, with the installed paths filled in.
	[[ $(unit_value Type) == oneshot && $(unit_value RemainAfterExit) == yes ]]
	[[ $(unit_value ExecStart) == "$PREFIX/lib/sockops/load.sh \$SOCKOPS_OPTS" ]]
	[[ $(unit_value ExecStop) == "$PREFIX/lib/sockops/unload.sh" ]]
	[[ $(unit_value EnvironmentFile) == "-/etc/default/sockops" ]]

	# Our own cgroup, pin directory and capacity, through the environment
	# file, as an administrator would set them.
	cat >>"$ENVFILE" <<EOF
SOCKOPS_OPTS="--quiet --cgroup $TEST_CG --max-entries 4096 --cross-netns"
SOCKOPS_PIN_DIR=$SOCKOPS_PIN_DIR
EOF
	unit_run ExecStart

	# Loaded from the installed objects: pins, both cgroup programs
	# attached to our cgroup, the sockhash sized as asked.
	sockops=$(prog_id "$SOCKOPS_PIN_DIR/$PIN_SOCKOPS")
	release=$(prog_id "$SOCKOPS_PIN_DIR/$PIN_RELEASE")
	[[ -n $sockops && -n $release ]]
	bpftool -j cgroup show "$TEST_CG" | jq -e --argjson s "$sockops" --argjson r "$release" '
		any(.[]; .id == $s and (.attach_type | test("sock_ops"))) and
		any(.[]; .id == $r and (.attach_type | test("sock_release")))'
	(($(bpftool -j map show pinned "$SOCKOPS_PIN_DIR/$PIN_MAP" | jq .max_entries) == 4096))
	# A real transfer goes through it ...
	spawn xfer-recv "$XFER" recv -b 127.0.0.1 -p "$PORT"
	wait_port "$PORT"
	in_cg "$XFER" send -a 127.0.0.1 -p "$PORT" -B 2000000 -R 1000000
	wait "$LAST_PID"
	(($(counter bytes_redirected) == 2000000 + 24 + 1000000))
	# ... and the installed status.sh, which finds its sockops_stat
	# beside it, says so.
	"$LIBEXEC/status.sh" --json | jq -e --arg cg "$TEST_CG" '
		.loaded and .cgroups == [$cg] and .map.max_entries == 4096 and
		.cross_netns and .counters.bytes_redirected == 3000024'
	# A second start is a no-op, as systemctl restart after a crash.
	run unit_run ExecStart
	[[ $status -eq 0 && $output == *"already loaded"* ]]

	unit_run ExecStop
	[[ ! -e $SOCKOPS_PIN_DIR ]]
	(($(cg_progs "$TEST_CG") == 0))
	run "$LIBEXEC/status.sh"
	[[ $status -eq 1 && $output == *"not loaded"* ]]

	# The environment file was changed: uninstall keeps it, and only it.
	run make -s -C "$TOP" uninstall DESTDIR="$DEST" PREFIX="$PREFIX"
	echo "$output"
	[[ $status -eq 0 && $output == *"kept   $ENVFILE (changed locally)"* ]]
	[[ $(files) == "./etc/default/sockops" ]]
	rm "$ENVFILE"
	[[ -z $(files) ]]
}

@test "make install keeps a changed environment file; install and uninstall alone leave nothing" {
	make -s -C "$TOP" install DESTDIR="$DEST" PREFIX="$PREFIX"
	echo 'SOCKOPS_OPTS="--quiet"  # mine' >"$ENVFILE"
	run make -s -C "$TOP" install DESTDIR="$DEST" PREFIX="$PREFIX"
	[[ $output == *"kept   $ENVFILE (changed locally)"* ]]
	grep -q "# mine" "$ENVFILE"
	rm "$ENVFILE"
	make -s -C "$TOP" install DESTDIR="$DEST" PREFIX="$PREFIX"
	cmp "$TOP/service/sockops.default" "$ENVFILE"
	make -s -C "$TOP" uninstall DESTDIR="$DEST" PREFIX="$PREFIX"
	files
	[[ -z $(files) ]]
	# Only our own directory goes; the standard ones stay, as with any
	# make uninstall.
	[[ ! -e $LIBEXEC && -d $DEST$PREFIX/sbin ]]
}
