# SPDX-License-Identifier: MIT
"""systemd integration without libsystemd: socket activation and ``sd_notify``.

Both are plain environment-variable protocols (``sd_listen_fds(3)``, ``sd_notify(3)``);
:func:`listen_fds` follows QEMU's ``check_socket_activation`` (util/systemd.c).
"""

from __future__ import annotations

import fcntl
import os
import socket

__all__ = ["FIRST_SOCKET_ACTIVATION_FD", "ActivationError", "listen_fds", "notify"]

#: The first fd systemd passes (``SD_LISTEN_FDS_START``).
FIRST_SOCKET_ACTIVATION_FD = 3


class ActivationError(OSError):
    """A passed fd is not open (QEMU: "Socket activation failed: invalid file descriptor")."""


def listen_fds() -> int:
    """How many sockets systemd passed, from fd 3 on; 0 if not socket-activated.

    As QEMU does, the fds only count when ``LISTEN_PID`` is this process; the variables are
    then removed (so children do not see them) and the fds made close-on-exec.

    :raises ActivationError: one of the announced fds is not open.
    """
    pid = os.environ.get("LISTEN_PID")
    count = os.environ.get("LISTEN_FDS")
    if pid is None or not pid.isdigit() or int(pid) != os.getpid():
        return 0
    if count is None or not count.isdigit():
        return 0
    for name in ("LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"):
        os.environ.pop(name, None)
    n = int(count)
    for fd in range(FIRST_SOCKET_ACTIVATION_FD, FIRST_SOCKET_ACTIVATION_FD + n):
        try:
            flags = fcntl.fcntl(fd, fcntl.F_GETFD)
            fcntl.fcntl(fd, fcntl.F_SETFD, flags | fcntl.FD_CLOEXEC)
        except OSError as exc:
            raise ActivationError(
                exc.errno,
                f"Socket activation failed: invalid file descriptor fd = {fd}: {exc.strerror}",
            ) from None
    return n


def notify(state: str, *, environ: dict[str, str] | None = None) -> bool:
    """Send *state* (``"READY=1"``, ``"STATUS=..."``) to ``$NOTIFY_SOCKET``.

    :param state: newline-separated ``KEY=VALUE`` assignments.
    :param environ: where to look up ``NOTIFY_SOCKET`` (``os.environ`` by default).
    :returns: whether a message was sent (False without ``NOTIFY_SOCKET`` or on error).
    """
    env = os.environ if environ is None else environ
    path = env.get("NOTIFY_SOCKET")
    if not path:
        return False
    address = "\0" + path[1:] if path.startswith("@") else path
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto(state.encode(), address)
    except OSError:
        return False
    return True
