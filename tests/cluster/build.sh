#!/bin/bash
# build.sh - build the boot artefacts of the dlm-electd VM test cluster:
#   $CACHE/vmlinuz        stock Debian 6.1 kernel (downloaded, NOT installed)
#   $CACHE/initramfs.gz   busybox + ocfs2/dlmfs/virtio/9p modules + guest/*
#                         + dlmtry (static trylock tool), netem (delay/loss)
# CACHE = ${DLM_ELECTD_CLUSTER_CACHE:-/var/tmp/dlm-electd-cluster} (never the repo).
# Idempotent: does nothing when the inputs (debs, guest files, this script,
# EXTRA_BINS) are unchanged.  Env:
#   KPKG=linux-image-6.1.0-NN-amd64   pin a kernel package (default: newest 6.1 amd64)
#   EXTRA_BINS="a b"                  static binaries to bake into the guest /bin
#   DLM_ELECTD_CLUSTER_NO_INSTALL=1   never apt-get install host tools
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
CACHE=${DLM_ELECTD_CLUSTER_CACHE:-/var/tmp/dlm-electd-cluster}
mkdir -p "$CACHE/debs"
export DEBIAN_FRONTEND=noninteractive

# 1. Host prerequisites (installed only when missing, root only).
need=()
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
command -v cpio >/dev/null || need+=(cpio)
command -v depmod >/dev/null || need+=(kmod)
command -v gcc >/dev/null || need+=(gcc)
[ -e /usr/lib/x86_64-linux-gnu/libc.a ] || need+=(libc6-dev)
command -v ip >/dev/null || need+=(iproute2)
if [ ${#need[@]} -gt 0 ]; then
	if [ "$(id -u)" = 0 ] && [ -z "${DLM_ELECTD_CLUSTER_NO_INSTALL:-}" ]; then
		echo "build.sh: installing ${need[*]}"
		apt-get update -q
		apt-get install -y -q --no-install-recommends "${need[@]}"
	else
		echo "build.sh: missing host packages: ${need[*]}" >&2
		exit 1
	fi
fi

# 2. Resolve the kernel package.  The newest linux-image-6.1.0-NN-amd64
# (signed: it also ships the modules), else its -unsigned twin.
resolve() {
	apt-cache search --names-only '^linux-image-6\.1\.0-[0-9]+-amd64(-unsigned)?$' |
		awk '{print $1}' | sort -V | awk '{k=$1; sub(/-unsigned$/,"",k); print k, $1}' |
		tail -1 | awk '{print $1}'
}
KPKG=${KPKG:-$(resolve)}
if [ -z "$KPKG" ] && [ "$(id -u)" = 0 ]; then apt-get update -q; KPKG=$(resolve); fi
[ -n "$KPKG" ] || { echo "build.sh: no linux-image-6.1.0-*-amd64 in apt (run apt-get update)" >&2; exit 1; }
KVER=${KPKG#linux-image-}; KVER=${KVER%-unsigned}

# 3. Download (cached).  apt-get download as root into a dir the _apt user
# cannot read prints a harmless "W: Download is performed unsandboxed" line.
dl() { # dl PKG...: first package that downloads wins; prints its .deb path
	local p f
	for p in "$@"; do
		f=$(ls "$CACHE/debs/${p}"_*.deb 2>/dev/null | head -1 || true)
		if [ -z "$f" ]; then
			(cd "$CACHE/debs" && apt-get download -q "$p" 2>&1 | grep -v unsandboxed >&2) || true
			f=$(ls "$CACHE/debs/${p}"_*.deb 2>/dev/null | head -1 || true)
		fi
		[ -n "$f" ] && { echo "$f"; return 0; }
	done
	echo "build.sh: cannot download any of: $*" >&2; return 1
}
KDEB=$(dl "linux-image-$KVER" "linux-image-$KVER-unsigned")
BDEB=$(dl busybox-static)

# 4. Up to date?  Hash everything the output depends on.
STAMP=$(echo "$KDEB $BDEB"; cat "$0" "$HERE"/guest/*;
	for b in ${EXTRA_BINS:-}; do sha256sum "$b"; done)
STAMP=$(echo "$STAMP" | sha256sum | cut -c1-16)
if [ -f "$CACHE/vmlinuz" ] && [ -f "$CACHE/initramfs.gz" ] &&
	[ "$(cat "$CACHE/stamp" 2>/dev/null)" = "$STAMP" ]; then
	echo "build.sh: up to date ($KVER, $CACHE)"
	exit 0
fi
echo "build.sh: building for $KVER from $(basename "$KDEB")"

# 5. Unpack into a scratch tree; the .deb has no modules.dep (its postinst
# runs depmod), so generate it there.
X=$CACHE/x
rm -rf "$X"; mkdir -p "$X"
dpkg-deb -x "$KDEB" "$X/kernel"
dpkg-deb -x "$BDEB" "$X/busybox"
depmod -b "$X/kernel" "$KVER"

# 6. Module closure in load order (dependencies first, each module once).
MODS="configfs ocfs2_nodemanager ocfs2_stackglue ocfs2_dlm ocfs2_stack_o2cb ocfs2_dlmfs
      virtio_pci virtio_blk virtio_net virtio_console 9pnet_virtio 9p sch_netem"
ORDER=$(for m in $MODS; do modprobe -d "$X/kernel" -S "$KVER" --show-depends "$m"; done |
	awk '$1=="insmod"{print $2}' | awk '!seen[$0]++')

# 7. initramfs tree.
R=$X/root
mkdir -p "$R"/{bin,etc,lib/modules,proc,sys,dev,tmp,run,dlm,host}
cp "$X/busybox/bin/busybox" "$R/bin/busybox"
: >"$R/etc/modules.order"
for f in $ORDER; do
	rel=${f#"$X/kernel/lib/modules/$KVER/"}
	mkdir -p "$R/lib/modules/$(dirname "$rel")"
	cp "$f" "$R/lib/modules/$rel"
	echo "$rel" >>"$R/etc/modules.order"
done
install -m 755 "$HERE/guest/init" "$R/init"
install -m 755 "$HERE/guest/o2cb-up" "$HERE/guest/agent" "$R/bin/"
gcc -static -O2 -Wall -o "$R/bin/dlmtry" "$HERE/guest/dlmtry.c"
gcc -static -O2 -Wall -o "$R/bin/netem" "$HERE/guest/netem.c"
for b in ${EXTRA_BINS:-}; do install -m 755 "$b" "$R/bin/"; done
(cd "$R" && find . | cpio -o -H newc --quiet | gzip -1) >"$CACHE/initramfs.gz.tmp"
cp "$X/kernel/boot/vmlinuz-$KVER" "$CACHE/vmlinuz.tmp"
mv "$CACHE/initramfs.gz.tmp" "$CACHE/initramfs.gz"
mv "$CACHE/vmlinuz.tmp" "$CACHE/vmlinuz"
echo "$KVER" >"$CACHE/kernel-version"
echo "$STAMP" >"$CACHE/stamp"
# harness.py refuses to boot an initramfs built from other guest/ files.
cat "$HERE"/guest/* | sha256sum | cut -c1-16 >"$CACHE/guest-hash"
echo "build.sh: $(wc -l <"$R/etc/modules.order") modules; wrote $CACHE/{vmlinuz,initramfs.gz}"
rm -rf "$X"
