#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# vmtest.sh [-k PACKAGE]... [-f REGEX] [TEST...] - run the bats suite inside
# Debian kernels, under qemu, the way a user's machine would boot them.
#
# For each kernel package (default: linux-image-amd64, Debian 12's kernel,
# and linux-image-6.12-amd64) it downloads and extracts the image into a
# cache, never into /boot, and boots it with this host's / as its root,
# read-only over virtio-9p.  The guest runs tests/TEST.bats (default: every
# file) with the objects and tools built here, prints TAP on the console,
# and writes it to a writable share.  Then a summary, one line per kernel;
# the exit status is non-zero if a test failed or a guest did not finish.
# The guest reads this tree as it is: do not rebuild it during a run.
#
# Cache: $VMTEST_CACHE, else /var/cache/sockops-vmtest for root (else
# ~/.cache/sockops-vmtest).  One directory per kernel package and version,
# reused while apt offers that version; another version of the same package
# is removed when a new one is extracted, unless a guest is using it.
#
# VMTEST_MEM (MiB, default 2048), VMTEST_CPUS (2), VMTEST_TIMEOUT (seconds
# per kernel, default 5400): a guest still running then is stopped and
# reported as "did not finish"; VMTEST_APPEND: more kernel parameters.
# KVM when a kernel boots under it (kvm_works), else TCG.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"

readonly GUEST_INIT=$TOP_DIR/vmtest/guest-init.sh
readonly MEM=${VMTEST_MEM:-2048}
readonly CPUS=${VMTEST_CPUS:-2}
readonly TIMEOUT=${VMTEST_TIMEOUT:-5400}
if [[ -n ${VMTEST_CACHE:-} ]]; then
	readonly CACHE=$VMTEST_CACHE
elif [[ $EUID -eq 0 ]]; then
	readonly CACHE=/var/cache/sockops-vmtest
else
	readonly CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/sockops-vmtest
fi
# The modules the initramfs needs to mount the root over virtio-9p.
readonly BOOT_MODULES="virtio_pci 9pnet_virtio 9p"

usage() {
	cat >&2 <<EOF
Usage: ${0##*/} [-k PACKAGE]... [-f REGEX] [TEST...]

Run tests/TEST.bats (default: all) inside each Debian kernel PACKAGE
(default: linux-image-amd64 linux-image-6.12-amd64) under qemu.

  -k PACKAGE   a linux-image package or metapackage (-amd64 flavour; the
               -cloud-amd64 one has no 9p); repeat for several
  -f REGEX     run only the tests whose name matches (bats --filter)
  -h, --help   this text
EOF
}

# real_package PACKAGE: follow a metapackage (linux-image-amd64) to the
# image package it depends on (linux-image-6.1.0-57-amd64).
real_package() {
	local pkg=$1 dep

	while dep=$(apt-cache depends "$pkg" 2>/dev/null |
		awk '$1 == "Depends:" && $2 ~ /^linux-image-/ { print $2; exit }') &&
		[[ -n $dep ]]; do
		pkg=$dep
	done
	echo "$pkg"
}

# fetch_kernel PACKAGE: print the directory holding the extracted image of
# PACKAGE's candidate version, downloading and extracting it if needed.
fetch_kernel() {
	local pkg ver dir old

	pkg=$(real_package "$1")
	ver=$(apt-cache policy "$pkg" | awk '$1 == "Candidate:" { print $2 }')
	[[ -n $ver && $ver != "(none)" ]] ||
		die "apt knows no package $pkg (from $1); try: apt-get update"
	dir=$CACHE/$pkg/$ver
	exec {prep_lock}>"$CACHE/.prep.lock"
	flock "$prep_lock"	# one download and extraction at a time
	if [[ ! -e $dir/.done ]]; then
		info "downloading $pkg $ver into $CACHE" >&2
		rm -rf "$dir"
		mkdir -p "$dir"
		(cd "$scratch" && apt-get download -q -o APT::Sandbox::User=root \
			"$pkg=$ver" >&2)
		dpkg-deb -x "$scratch/${pkg}_"*.deb "$dir"
		rm -f "$scratch/${pkg}_"*.deb
		depmod -b "$dir" "$(ls "$dir/lib/modules")"
		touch "$dir/.done"
	fi
	# Other versions of this package, when no guest is running.
	if flock -n -x "$use_lock"; then
		for old in "$CACHE/$pkg"/*; do
			[[ $old == "$dir" ]] || rm -rf "$old"
		done
	fi
	flock -s "$use_lock"
	flock -u "$prep_lock"
	exec {prep_lock}>&-
	echo "$dir"
}

# make_initramfs KDIR KVER OUT: a busybox initramfs that loads the virtio
# and 9p modules of the extracted kernel (in the order modprobe gives) and
# mounts the root.  Its /init is the heredoc below.
make_initramfs() {
	local kdir=$1 kver=$2 out=$3 dir=$scratch/initramfs m kind ko name

	rm -rf "$dir"
	mkdir -p "$dir"/{bin,dev,proc,sys,newroot,modules}
	cp "$(command -v busybox)" "$dir/bin/busybox"
	: >"$dir/modules/order"
	for m in $BOOT_MODULES; do
		modprobe -d "$kdir" -S "$kver" --show-depends "$m" |
		while read -r kind ko _; do
			[[ $kind == insmod ]] || continue	# "builtin NAME"
			name=$(basename "$ko")
			name=${name%%.ko*}
			! grep -qx "$name" "$dir/modules/order" || continue
			case $ko in
			*.xz)	xz -dc "$ko" ;;
			*.zst)	zstd -qdc "$ko" ;;
			*)	cat "$ko" ;;
			esac >"$dir/modules/$name.ko"
			echo "$name" >>"$dir/modules/order"
		done
	done
	cat >"$dir/init" <<'EOF'
#!/bin/busybox sh
# The kernel passes vmtest_init=PATH from its command line as a variable.
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in $(cat /modules/order); do
	insmod /modules/$m.ko || echo "initramfs: insmod $m failed"
done
opts=trans=virtio,version=9p2000.L,msize=512000
mount -t 9p -o $opts,ro,cache=loose root /newroot &&
mount -t tmpfs -o mode=755 tmpfs /newroot/run &&
mkdir /newroot/run/vmtest &&
mount -t 9p -o $opts share /newroot/run/vmtest || {
	echo "initramfs: cannot mount the 9p shares"
	poweroff -f
}
mount --move /dev /newroot/dev
mount --move /proc /newroot/proc
mount --move /sys /newroot/sys
exec switch_root /newroot "$vmtest_init"
EOF
	chmod +x "$dir/init"
	(cd "$dir" && find . | cpio -o -H newc --quiet | gzip -1) >"$out"
}

# run_kernel PACKAGE: boot it, run the tests; its TAP ends in
# $scratch/KVER/share/tap and its exit status in .../share/rc.
run_kernel() {
	local kdir kver share accel t0=$SECONDS

	kdir=$(fetch_kernel "$1")
	kver=$(ls "$kdir/lib/modules")
	share=$scratch/$kver/share
	mkdir -p "$share"
	make_initramfs "$kdir" "$kver" "$scratch/$kver/initrd"
	# What the guest runs, as shell assignments it sources.
	{
		declare -p kdir tests filter
		echo "nofile=$(ulimit -Hn)"
	} >"$share/conf"
	if kvm_works "$kdir/boot/vmlinuz-$kver"; then
		accel=(-accel kvm -cpu host)
	else
		accel=(-accel tcg,thread=multi -cpu max)
	fi
	info "$1: booting $kver (${accel[1]}, $MEM MiB, $CPUS CPUs)"
	# In the background, so that a signal to this script reaches the
	# guest: timeout runs qemu in a process group of its own.
	timeout -k 10 "$TIMEOUT" qemu-system-x86_64 "${accel[@]}" \
		-m "$MEM" -smp "$CPUS" -nodefaults -no-reboot -nic none \
		-display none -monitor none -serial stdio \
		-kernel "$kdir/boot/vmlinuz-$kver" -initrd "$scratch/$kver/initrd" \
		-append "console=ttyS0 quiet panic=-1 ${VMTEST_APPEND:-} vmtest_init=$GUEST_INIT" \
		-fsdev local,id=root,path=/,readonly=on,security_model=none,multidevs=remap \
		-device virtio-9p-pci,fsdev=root,mount_tag=root \
		-fsdev local,id=share,path="$share",security_model=none,multidevs=remap \
		-device virtio-9p-pci,fsdev=share,mount_tag=share \
		</dev/null > >(sed -u "s/\r$//; s/^/[$kver] /") 2>&1 &
	guest=$!
	wait "$guest" || true
	guest=
	echo "$kver $((SECONDS - t0))" >>"$scratch/ran"
}

# kvm_works KERNEL: true if qemu can run KERNEL under KVM here.  A
# writable /dev/kvm is not enough: inside some VMs KVM opens, and then the
# guest never runs (no console output, for as long as one waits).  So the
# kernel must print its banner within 30 s, once per run.
kvm_works() {
	if [[ -z ${KVM_OK:-} ]]; then
		KVM_OK=no
		if [[ -w /dev/kvm ]] &&
			timeout -k 5 30 qemu-system-x86_64 -accel kvm -cpu host -m 256 \
				-nodefaults -no-reboot -display none -monitor none \
				-serial stdio -kernel "$1" -append "console=ttyS0 panic=-1" \
				</dev/null 2>/dev/null | grep -q -m 1 "Linux version"; then
			KVM_OK=yes
		fi
	fi
	[[ $KVM_OK == yes ]]
}

# test_file NAME: tests/NAME.bats, or NAME itself if it is a file.
test_file() {
	local f

	for f in "$TOP_DIR/tests/$1.bats" "$1"; do
		[[ -f $f ]] && { realpath "$f"; return; }
	done
	die "no test file $1 (nor tests/$1.bats)"
}

# summary: per kernel, the counts of its TAP (the file, not the console,
# where kernel messages may interleave), or why it has none.  Fails if a
# test failed or a guest did not finish.
summary() {
	local kver secs tap plan ok skip fail line bad=0

	echo "== vmtest summary: ${tests[*]##*/}"
	while read -r kver secs; do
		tap=$scratch/$kver/share/tap
		[[ -f $tap ]] || : >"$tap"	# the guest never got to bats
		plan=$(sed -n 's/^1\.\.//p' "$tap")
		ok=$(grep -cE '^ok ' "$tap") || true
		skip=$(grep -cE '^ok .* # skip' "$tap") || true
		fail=$(grep -cE '^not ok ' "$tap") || true
		line="== vmtest $kver: $((ok - skip)) passed, $fail failed, $skip skipped"
		line+=" in $((secs / 60)) min $((secs % 60)) s"
		if [[ ! -f $scratch/$kver/share/rc ]]; then
			line+=", did not finish ($((ok + fail)) of ${plan:-?} ran)"
			bad=1
		fi
		((fail == 0)) || bad=1
		echo "$line"
	done <"$scratch/ran"
	return $bad
}

main() {
	local k t f

	kernels=()
	filter=()
	[[ ${1:-} != --help ]] || { usage; exit 0; }
	while getopts k:f:h opt; do
		case $opt in
		k)	kernels+=("$OPTARG") ;;
		f)	filter=(--filter "$OPTARG") ;;
		h)	usage; exit 0 ;;
		*)	usage; exit 2 ;;
		esac
	done
	shift $((OPTIND - 1))
	((${#kernels[@]})) || kernels=(linux-image-amd64 linux-image-6.12-amd64)

	tests=()
	if (($#)); then
		for t in "$@"; do
			tests+=("$(test_file "$t")")
		done
	else
		tests=("$TOP_DIR"/tests/*.bats)
	fi

	need_tools apt-get apt-cache dpkg-deb depmod modprobe cpio busybox \
		qemu-system-x86_64 timeout flock
	[[ $TOP_DIR != *[[:space:]]* ]] ||
		die "the repo path '$TOP_DIR' has white space; the guest's command line cannot carry it"
	for f in "$TOP_DIR/bpf_sockops.o" "$TOP_DIR/bpf_redir.o" "$TOP_DIR/bpf_sockopt.o"; do
		[[ -f $f ]] || die "$f not found: build first with 'make' (the guest cannot write the tree)"
	done

	scratch=$(mktemp -d "${TMPDIR:-/tmp}/sockops-vmtest.XXXXXX")
	guest=
	trap '[[ -z $guest ]] || kill "$guest" 2>/dev/null; rm -rf "$scratch"' EXIT
	trap 'exit 130' INT TERM
	mkdir -p "$CACHE"
	exec {use_lock}>"$CACHE/.use.lock"

	for k in "${kernels[@]}"; do
		run_kernel "$k"
	done
	summary
}

# All in functions: bash has read the whole script before it runs, so an
# edit during a long run cannot change what this run does.
main "$@"
