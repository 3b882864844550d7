# SPDX-License-Identifier: MIT
# shellcheck shell=bash
# Sourced (through BASH_ENV) by bash before a VM test bed script runs in the guest.
# Helpers for guest scripts; the host reads what they record with VMResult.command(NAME).

# vmbed_run NAME CMD [ARG...]: run CMD, keep its stdout, stderr and exit status in
# $VMBED_RESULT_DIR/NAME.out, NAME.err and NAME.rc, echo them to the script's own
# stdout/stderr too, and return CMD's exit status (so `set -e` scripts should use `|| true`).
vmbed_run() {
    local name=$1 rc
    shift
    "$@" >"$VMBED_RESULT_DIR/$name.out" 2>"$VMBED_RESULT_DIR/$name.err" </dev/null
    rc=$?
    echo "$rc" >"$VMBED_RESULT_DIR/$name.rc"
    echo "--- $name: $* (exit $rc)"
    cat "$VMBED_RESULT_DIR/$name.out"
    cat "$VMBED_RESULT_DIR/$name.err" >&2
    return "$rc"
}

# vmbed_put NAME < data: store stdin as $VMBED_RESULT_DIR/NAME (VMResult.text / .json).
vmbed_put() { cat >"$VMBED_RESULT_DIR/$1"; }

unset BASH_ENV
