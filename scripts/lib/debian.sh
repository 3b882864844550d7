# SPDX-License-Identifier: MIT
# Shell functions scripts/run-tests and scripts/vm-setup share (sourced, not run): installing
# Debian packages without starting their services on the host.

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

have_cmd() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/sbin/$1" ]; }

# install_packages PREFIX PACKAGE...: apt-get install them; services are never started on the
# host: without an /usr/sbin/policy-rc.d, a temporary one forbidding starts is in place for
# the install (postgresql, multipath-tools and udev would start daemons otherwise).
install_packages() {
    local prefix=$1
    shift
    [ $# -gt 0 ] || return 0
    echo "$prefix: installing Debian packages: $*"
    local policy=/usr/sbin/policy-rc.d temp_policy=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\n# temporary, from qompr scripts/lib/debian.sh\nexit 101\n' |
            as_root tee "$policy" >/dev/null
        as_root chmod 755 "$policy"
        temp_policy=1
        trap 'as_root rm -f /usr/sbin/policy-rc.d' EXIT  # also when interrupted
    fi
    local status=0
    as_root apt-get update -qq &&
        DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends \
            -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "$@" ||
        status=$?
    if [ "$temp_policy" = 1 ]; then
        as_root rm -f "$policy"
        trap - EXIT
    fi
    return "$status"
}

# extract_from_package PACKAGE FILE DEST: copy FILE (an absolute path inside PACKAGE's .deb)
# to DEST without installing the package (apt-get download, dpkg-deb -x).
extract_from_package() {
    local package=$1 file=$2 dest=$3 work
    work=$(mktemp -d)
    if ! (cd "$work" && apt-get download -qq "$package" 2>/dev/null); then
        as_root apt-get update -qq
        (cd "$work" && apt-get download -qq "$package")
    fi
    dpkg-deb -x "$work"/"$package"_*.deb "$work/root"
    mkdir -p "$(dirname "$dest")"
    cp "$work/root$file" "$dest"
    rm -rf "$work"
}
