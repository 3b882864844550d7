# SPDX-License-Identifier: MIT
"""A minimal QMP client (enough to record ``/objects`` of a running QEMU), independent of
qompr so that it can check qompr's own QMP-shaped answers."""

from __future__ import annotations

import json
import socket
from typing import Any

from tests._support.placeholders import JsonObject
from tests._support.placeholders import JsonValue

__all__ = ["QMPClient", "QMPError", "inspect_objects"]


class QMPError(Exception):
    pass


class QMPClient:
    def __init__(self, sock: socket.socket, timeout: float) -> None:
        self._sock = sock
        self._sock.settimeout(timeout)
        self._buf = b""

    def read_message(self) -> JsonObject | None:
        """The next JSON object from QEMU, or None at end of file."""
        while b"\n" not in self._buf:
            chunk = self._sock.recv(65536)
            if not chunk:
                return None
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        msg: Any = json.loads(line.decode("utf-8"))
        if not isinstance(msg, dict):
            raise QMPError(f"unexpected QMP message: {msg!r}")
        return msg

    def execute(self, command: str, arguments: JsonObject | None = None) -> JsonObject:
        request: JsonObject = {"execute": command}
        if arguments is not None:
            request["arguments"] = arguments
        self._sock.sendall(json.dumps(request).encode("utf-8") + b"\n")
        while True:
            msg = self.read_message()
            if msg is None:
                raise QMPError(f"EOF while waiting for the answer to {command}")
            if "event" in msg or "QMP" in msg:
                # Events, and a repeated greeting: a client that connects while
                # qemu-storage-daemon attaches its monitor is rarely greeted twice.
                continue
            return msg


def _qmp_return(reply: JsonObject, what: str) -> JsonValue:
    if "return" not in reply:
        raise QMPError(f"{what} failed: {reply!r}")
    return reply["return"]


def inspect_objects(client: QMPClient) -> list[JsonValue]:
    """qom-list /objects, then qom-list and qom-get each property of each child."""
    _qmp_return(client.execute("qmp_capabilities"), "qmp_capabilities")
    children = _qmp_return(client.execute("qom-list", {"path": "/objects"}), "qom-list")
    if not isinstance(children, list):
        raise QMPError(f"qom-list /objects returned {children!r}")
    objects: list[JsonValue] = []
    for child in sorted(children, key=lambda c: str(c["name"]) if isinstance(c, dict) else ""):
        if not isinstance(child, dict):
            raise QMPError(f"bad qom-list entry {child!r}")
        name = str(child["name"])
        ctype = str(child["type"])
        if not ctype.startswith("child<"):
            continue
        path = f"/objects/{name}"
        props = _qmp_return(client.execute("qom-list", {"path": path}), "qom-list")
        if not isinstance(props, list):
            raise QMPError(f"qom-list {path} returned {props!r}")
        recorded: list[JsonValue] = []
        for prop in sorted(props, key=lambda p: str(p["name"]) if isinstance(p, dict) else ""):
            if not isinstance(prop, dict):
                raise QMPError(f"bad qom-list entry {prop!r}")
            pname = str(prop["name"])
            entry: JsonObject = {"name": pname, "type": prop["type"]}
            reply = client.execute("qom-get", {"path": path, "property": pname})
            if "return" in reply:
                entry["value"] = reply["return"]
            else:
                entry["error"] = reply.get("error")
            recorded.append(entry)
        objects.append({"id": name, "type": ctype[len("child<") : -1], "properties": recorded})
    return objects
