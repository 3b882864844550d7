#!/bin/sh
# SPDX-License-Identifier: MIT
# Stage 1 of the VM test bed: /init of the busybox initramfs that tests/vm/vmbed.py builds.
#
# Loads the modules listed in /mods/order (virtio-pci, 9p, overlayfs, in dependency order),
# mounts the host's / (virtio-9p tag "hostroot", read-only) under a tmpfs overlay and
# switch_roots into it, running the stage-2 script named by vmbed.init= on the kernel command
# line (tests/vm/guest-init.sh, read from the host root).
# Changing this file changes the initramfs cache key, so a new image is built automatically.
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
fail() {
    echo "vmbed-initrd: $*"
    poweroff -f
}
while read -r m; do
    insmod "/mods/$m" || echo "vmbed-initrd: insmod $m failed"
done </mods/order
NEXT=""
CACHE=loose
read -r CMDLINE </proc/cmdline
for a in $CMDLINE; do
    case $a in
    vmbed.init=*) NEXT=${a#vmbed.init=} ;;
    vmbed.cache=*) CACHE=${a#vmbed.cache=} ;;
    esac
done
[ -n "$NEXT" ] || fail "no vmbed.init= on the kernel command line"
mkdir -p /lower /rw /newroot
mount -t 9p -o "trans=virtio,version=9p2000.L,ro,msize=262144,cache=$CACHE" hostroot /lower ||
    fail "9p root mount failed"
mount -t tmpfs -o mode=755 tmpfs /rw || fail "tmpfs mount failed"
mkdir -p /rw/upper /rw/work
mount -t overlay overlay -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work /newroot ||
    fail "overlay mount failed"
[ -x "/newroot$NEXT" ] || fail "stage 2 $NEXT is not executable in the host root"
mount --move /proc /newroot/proc
mount --move /sys /newroot/sys
mount --move /dev /newroot/dev
exec switch_root /newroot "$NEXT"
