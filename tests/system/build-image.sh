#!/bin/bash
# build-image.sh — the Debian 12 (systemd, o2cb) VM image of the system tier.
#
# Prints the image directory on its last line: $CACHE/image-KEY with base.raw (sparse
# ext4 root, used read-only as a backing file), vmlinuz and initrd.img (direct boot).
# KEY hashes every input (this script, the package list, image/), so any change
# builds a new image; the debootstrap tree is keyed on suite + packages only, so
# editing a file in image/ costs a few seconds, not a debootstrap. Older builds are
# deleted once a new one succeeded. Nothing goes into the repo.
#
# Needs root, debootstrap and e2fsprogs (mkfs.ext4 -d: no loop device, no mount);
# installs debootstrap with apt-get if missing. Network: only the Debian mirror that
# apt on this machine is configured with.
set -euo pipefail
CACHE=${DLM_ELECTD_SYSTEM_CACHE:-/var/tmp/dlm-electd-system}
SUITE=bookworm
HERE=$(cd "$(dirname "$0")" && pwd)
# On top of --variant=minbase (debootstrap installs no Recommends):
#  systemd/udev/dbus: a normal systemd machine (the unit action talks to systemd over D-Bus)
#  ocfs2-tools: o2cb, mkfs.ocfs2 (the cluster is set up with them, as a user does)
#  linux-image-amd64/initramfs-tools: kernel 6.1 with ocfs2, ocfs2_dlmfs, 9p, virtio
#  qemu-guest-agent: the host's command channel; iproute2/arping: what a VIP needs
#  corosync/dlm-controld: the corosync stack of tests/system/corosync.py (the
#    kernel's fs/dlm); installed disabled, that tier configures and starts them
PKGS="systemd systemd-sysv udev dbus kmod procps iproute2 iputils-ping arping ocfs2-tools
e2fsprogs linux-image-amd64 initramfs-tools qemu-guest-agent python3-minimal less
corosync dlm-controld"

key() { sha256sum | cut -c1-12; }
ROOTKEY=$(echo "$SUITE $PKGS" | key)
KEY=$( { echo "$SUITE $PKGS"; cat "$0"; (cd "$HERE/image" && find . -type f | sort | xargs cat); } | key)
ROOT=$CACHE/rootfs-$ROOTKEY
OUT=$CACHE/image-$KEY
mkdir -p "$CACHE"
exec 9>"$CACHE/build.lock"
flock 9                              # two runs at once build one image
if [ -e "$OUT/.ok" ]; then echo "$OUT"; exit 0; fi

command -v debootstrap >/dev/null || {
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends debootstrap >&2; }

# The mirror apt uses (no hard-coded host): deb822 *.sources, then one-line lists.
detect_mirror() {
    local f
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -e "$f" ] || continue
        awk -v suite="$SUITE" '
            function flush() { if (uri != "" && suites ~ ("(^| )" suite "( |$)") && uri !~ /security/) { print uri; exit } uri=""; suites="" }
            /^[[:space:]]*$/ { flush(); next }
            /^URIs:/   { uri=$2 }
            /^Suites:/ { $1=""; suites=$0; sub(/^ /,"",suites) }
            END { flush() }' "$f"
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -e "$f" ] && cat "$f"
    done | awk -v suite="$SUITE" '$1=="deb" { i=2; if ($2 ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
                                if ($(i+1)==suite && $i !~ /security/) print $i }'
    return 0
}

t0=$(date +%s)
if [ ! -e "$ROOT/.debootstrap-ok" ]; then
    MIRROR=$(detect_mirror | sed -n 1p)
    [ -n "$MIRROR" ] || { echo "no $SUITE mirror in /etc/apt/sources.list*" >&2; exit 1; }
    rm -rf "$ROOT"
    debootstrap --variant=minbase --include="$(echo $PKGS | tr ' ' ,)" --components=main \
        "$SUITE" "$ROOT" "$MIRROR" >&2
    touch "$ROOT/.debootstrap-ok"
    echo "debootstrap: $(( $(date +%s) - t0 )) s" >&2
fi

# Configure the tree: plain file edits, idempotent. image/ is copied over / as is.
cp -a "$HERE/image/." "$ROOT/"
chmod 0755 "$ROOT"/usr/local/sbin/*
echo node > "$ROOT/etc/hostname"          # each VM: systemd.hostname= on the cmdline
: > "$ROOT/etc/machine-id"                # empty: every VM generates its own
rm -f "$ROOT/var/lib/dbus/machine-id"
chroot "$ROOT" passwd -d root >/dev/null  # root console login for debugging
mkdir -p "$ROOT/var/log/journal" "$ROOT/mnt/host"
# Units that would cost time or fight over a device under TCG:
#  getty@tty1 (no VGA), e2scrub_reap (~7 s per boot), and serial-getty@hvc0, which
#  systemd's getty generator adds for hvc0 = our host event console.
for u in getty@tty1 e2scrub_reap serial-getty@hvc0 apt-daily.timer apt-daily-upgrade.timer; do
    case $u in *.timer) ;; *) u=$u.service;; esac
    ln -sf /dev/null "$ROOT/etc/systemd/system/$u"
done
chroot "$ROOT" systemctl enable lab-net.service lab-events.service >/dev/null 2>&1
# The o2cb scenarios never run corosync: it would join nobody and cost boot time.
chroot "$ROOT" systemctl disable corosync.service dlm.service >/dev/null 2>&1 || true
rm -rf "$ROOT"/var/cache/apt/archives/*.deb "$ROOT"/var/lib/apt/lists/*_Packages

rm -rf "$OUT.tmp"; mkdir -p "$OUT.tmp"
cp "$(ls "$ROOT"/boot/vmlinuz-* | sort -V | tail -n1)" "$OUT.tmp/vmlinuz"
cp "$(ls "$ROOT"/boot/initrd.img-* | sort -V | tail -n1)" "$OUT.tmp/initrd.img"
truncate -s 3G "$OUT.tmp/base.raw"        # sparse: ~0.7 GB allocated
mkfs.ext4 -q -F -L dlmsys-root -d "$ROOT" "$OUT.tmp/base.raw"
touch "$OUT.tmp/.ok"
rm -rf "$OUT"; mv "$OUT.tmp" "$OUT"
# Older builds are dead weight (a rootfs is ~650 MB, an image ~700 MB).
for d in "$CACHE"/rootfs-* "$CACHE"/image-*; do
    [ "$d" = "$ROOT" ] || [ "$d" = "$OUT" ] || rm -rf "$d"
done
echo "image built in $(( $(date +%s) - t0 )) s" >&2
echo "$OUT"
