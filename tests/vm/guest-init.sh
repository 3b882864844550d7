#!/bin/bash
# SPDX-License-Identifier: MIT
# Stage 2 of the VM test bed (tests/vm/vmbed.py): PID 1 in the guest, on the overlay root.
#
# Mounts the run directory of the host (9p tag "vmbedout") at /vmbed-out, reads the run's
# parameters from /vmbed-out/params, mounts the read-write host directories, sets up LIO (one
# fileio LUN exported through N tcm_loop targets = N I_T nexuses), optionally dm-multipath and
# qemu-pr-helper, runs /vmbed-out/script.sh with bash and powers the guest off.
#
# Files it leaves in the run directory for the host:
#   setup.log     everything this script printed (fd 3 is the serial console)
#   timings       "milestone guest-uptime-seconds" lines
#   env           NUL-separated VMBED_*=value pairs the script saw
#   stdout stderr rc       the script's output and exit status
#   setup_failed  the reason, when the bed could not be set up (then there is no rc)
#   multipathd.log, qemu-pr-helper.log   daemon logs when those were started
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
# Simple tools come from the static busybox: under TCG, with the root on 9p, each coreutils
# program costs 30-70 ms per run (dynamic linking, several files) and far more the first time;
# a busybox applet costs about 6-10 ms.
bb() { busybox "$@"; }
O=/vmbed-out
finish() {
    sync
    bb poweroff -f
    echo o >/proc/sysrq-trigger
    while :; do bb sleep 1; done
}
bb mount -t tmpfs -o mode=755 tmpfs /run
bb mkdir -p $O
if ! bb mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 vmbedout $O; then
    echo "vmbed: cannot mount the run directory (9p tag vmbedout)"
    finish
fi
exec 3>&1 >$O/setup.log 2>&1
die() {
    echo "SETUP FAILED: $*"
    echo "$*" >$O/setup_failed
    finish
}
t() {
    local up _
    read -r up _ </proc/uptime
    echo "$1 $up" >>$O/timings
}
t stage2
# params sets NPATHS MULTIPATH PRHELPER DISK_MB MPKEY RW_DIRS and exports the script's env
# shellcheck source=/dev/null
source $O/params || die "cannot read $O/params"
: "${NPATHS:?}" "${MULTIPATH:?}" "${PRHELPER:?}" "${DISK_MB:?}"
PS4='+ ${EPOCHREALTIME:8} '
set -x

bb mkdir -p /dev/pts /dev/shm
bb mount -t devpts -o gid=5,mode=620 devpts /dev/pts
bb mount -t tmpfs -o mode=1777 tmpfs /dev/shm
echo vmbed >/proc/sys/kernel/hostname
bb ip link set lo up
for i in "${!RW_DIRS[@]}"; do
    d=${RW_DIRS[$i]}
    bb mkdir -p "$d"
    bb mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 "rw$i" "$d" || die "rw mount $d"
done
bb mkdir -p "$VMBED_RESULT_DIR"

# ------------------------------------------------------------------------------ LIO
MODS=(configfs target_core_mod target_core_file tcm_loop sd_mod sg)
[ "$MULTIPATH" = 1 ] && MODS+=(dm_multipath dm_round_robin dm_service_time scsi_dh_alua)
# busybox modprobe (reads the text modules.dep) loads these in about half kmod's time
bb modprobe -a "${MODS[@]}" || modprobe -a "${MODS[@]}" || die "modprobe ${MODS[*]}"
bb mountpoint -q /sys/kernel/config || bb mount -t configfs configfs /sys/kernel/config ||
    die "mount configfs"
# LIO keeps APTPL and ALUA metadata under its dbroot (/var/target).  Without pr/ every PR OUT
# that changes the registrations fails (NOT READY, LOGICAL UNIT COMMUNICATION FAILURE).
bb mkdir -p /var/target/pr /var/target/alua /run/lio
LIO_FILE=/run/lio/disk0.img
DISK_BYTES=$((DISK_MB * 1024 * 1024))
bb truncate -s $DISK_BYTES $LIO_FILE || die "backing file"
C=/sys/kernel/config/target
D=$C/core/fileio_0/disk0
bb mkdir -p $D || die "backstore mkdir"
echo "fd_dev_name=$LIO_FILE,fd_dev_size=$DISK_BYTES" >$D/control || die "backstore control"
echo vmbed0000disk0 >$D/wwn/vpd_unit_serial
echo 1 >$D/enable || die "backstore enable"
ENV=/run/vmbed.env
q() { printf '%q' "$1"; }
DEVS="" SGS=""
shopt -s nullglob
for ((i = 1; i <= NPATHS; i++)); do
    printf -v target 'naa.500140500000a%03x' "$i"
    printf -v initiator 'naa.500140500000b%03x' "$i"
    T=$C/loopback/$target/tpgt_1
    bb mkdir -p "$T" || die "tcm_loop target $i"
    # The I_T nexus must exist before the LUN is linked: otherwise the scan fails with
    # "TCM_Loop I_T Nexus does not exist" and no sdX appears.
    echo "$initiator" >"$T/nexus" || die "nexus $i"
    bb mkdir -p "$T/lun/lun_0" || die "lun $i"
    bb ln -s "$D" "$T/lun/lun_0/vmbed_port" || die "lun link $i"
    hctl=$(<"$T/address"):0
    b="" g=""
    for ((w = 0; w < 200; w++)); do
        blk=(/sys/bus/scsi/devices/"$hctl"/block/*)
        sg=(/sys/bus/scsi/devices/"$hctl"/scsi_generic/*)
        b=${blk[0]##*/} g=${sg[0]##*/}
        [ -n "$b" ] && [ -n "$g" ] && [ -b "/dev/$b" ] && [ -c "/dev/$g" ] && break
        bb usleep 20000
    done
    if ! [ -b "/dev/$b" ] || ! [ -c "/dev/$g" ]; then
        die "no sd/sg device for path $i ($hctl)"
    fi
    DEVS="$DEVS /dev/$b" SGS="$SGS /dev/$g"
    {
        echo "export VMBED_DEV$i=/dev/$b VMBED_SG$i=/dev/$g VMBED_HCTL$i=$hctl"
        echo "export VMBED_INITIATOR$i=$initiator VMBED_TARGET$i=$target"
    } >>$ENV
done
{
    echo "export VMBED_PATHS=$NPATHS VMBED_DEVS=$(q "${DEVS# }") VMBED_SGS=$(q "${SGS# }")"
    echo "export VMBED_LIO_DEV=$D VMBED_LIO_FILE=$LIO_FILE VMBED_DISK_MB=$DISK_MB"
} >>$ENV
t lio

# ------------------------------------------------------------------------------ multipath
if [ "$MULTIPATH" = 1 ]; then
    bb mkdir -p /etc/multipath
    {
        echo "defaults {"
        echo "    user_friendly_names yes"
        # Debian's default find_multipaths "strict" ignores WWIDs it has not seen before.
        echo "    find_multipaths no"
        [ -n "$MPKEY" ] && echo "    reservation_key $MPKEY"
        echo "}"
    } >/etc/multipath.conf
    /lib/systemd/systemd-udevd --daemon || die "systemd-udevd"
    udevadm trigger --action=add --subsystem-match=block --subsystem-match=scsi_generic
    udevadm settle -t 30
    multipathd -d -s -v2 >$O/multipathd.log 2>&1 &
    # Wait for the map with all its paths (/sys/block/dm-N/dm/name is "mpatha").  With one
    # vCPU a busy poll would slow multipathd down: let udevadm wait (inotify) for the node.
    udevadm wait --timeout=30 --settle /dev/mapper/mpatha
    npaths=0
    for ((w = 0; w < 600; w++)); do
        for dm in /sys/block/dm-*; do
            if [ "$(<"$dm/dm/name")" = mpatha ]; then
                slaves=("$dm"/slaves/*)
                npaths=${#slaves[@]}
            fi
        done
        [ "$npaths" -ge "$NPATHS" ] && [ -b /dev/mapper/mpatha ] && break
        bb usleep 50000
    done
    [ -b /dev/mapper/mpatha ] || die "no /dev/mapper/mpatha"
    [ "$npaths" -ge "$NPATHS" ] || die "mpatha has $npaths of $NPATHS paths"
    udevadm settle -t 30
    echo "export VMBED_MPATH=/dev/mapper/mpatha VMBED_MPATH_KEY=$(q "$MPKEY")" >>$ENV
    t multipath
fi

# ------------------------------------------------------------------------------ qemu-pr-helper
if [ "$PRHELPER" = 1 ]; then
    sock=/run/qemu-pr-helper.sock
    qemu-pr-helper -k $sock >$O/qemu-pr-helper.log 2>&1 &
    for ((w = 0; w < 200; w++)); do
        [ -S $sock ] && break
        bb usleep 50000
    done
    [ -S $sock ] || die "qemu-pr-helper socket missing"
    echo "export VMBED_PRH_SOCK=$sock VMBED_PRH_PID=$!" >>$ENV
    t pr_helper
fi

# ------------------------------------------------------------------------------ the script
set +x
shopt -u nullglob
bb cat $ENV
# shellcheck source=/dev/null
source $ENV
for v in "${!VMBED_@}"; do printf '%s=%s\0' "$v" "${!v}"; done >$O/env
cd "$VMBED_CWD" 2>/dev/null || cd /
t script_start
BASH_ENV=$VMBED_LIB bash $O/script.sh >$O/stdout 2>$O/stderr </dev/null 3>&-
rc=$?
t script_end
echo "script exit status $rc"
echo $rc >$O/rc
finish
