# SPDX-License-Identifier: MIT
"""The one exception tree of qompr.

Every error qompr raises on purpose derives from :class:`QomprError`::

    QomprError
     ├── ObjectError                 QOM: types, properties, the object tree, object-add/del
     │    └── OptionError            a malformed ``-object`` string (keyval, QemuOpts, JSON)
     │         └── HelpRequestError  ... one asking for help where objects were wanted
     ├── ScsiError (ValueError)      bytes that are not a valid CDB, parameter list or PR IN data
     ├── PluginError                 a plugin that cannot be loaded or registers nonsense
     ├── ProtocolError               the qemu-pr-helper socket protocol was broken
     │    ├── LocalProtocolError     ... by us (a programming error on this side)
     │    └── RemoteProtocolError    ... by the peer (hostile or buggy: close the connection)
     ├── ConnectError (OSError)      a manager could not reach its backend; keeps the cause
     ├── StateError                  an operation in the wrong state (closed, not completed)
     └── TestingError                qompr.testing: a helper that did not listen, a peer hung up

SCSI outcomes such as CHECK CONDITION or RESERVATION CONFLICT are *not* exceptions: they are
:class:`qompr.scsi.ScsiResult` values.  Exceptions are for transport and programming errors.

Messages read like QEMU's (``Parameter 'id' is missing``); an optional *hint* is the second
line QEMU prints after some errors (``error_append_hint``).
"""

from __future__ import annotations

__all__ = [
    "ConnectError",
    "HelpRequestError",
    "LocalProtocolError",
    "ObjectError",
    "OptionError",
    "PluginError",
    "ProtocolError",
    "QomprError",
    "RemoteProtocolError",
    "ScsiError",
    "StateError",
]


class QomprError(Exception):
    """Root of every error qompr raises on purpose.

    :param message: the text a user sees, worded like QEMU's.
    :param hint: an optional further line, as QEMU's ``error_append_hint`` prints it.
    """

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)  # str() of the exception is the message
        self.message = message
        self.hint = hint
        #: Where the error was found, as QEMU's ``Location`` prints it (``-object ARG``).
        self.location: str | None = None

    def render(self) -> str:
        """The message followed by the hint, each line as QEMU prints it."""
        if self.hint:
            return f"{self.message}\n{self.hint.rstrip(chr(10))}"
        return self.message


class ObjectError(QomprError):
    """A QOM error: unknown type, bad property value, missing object, refused deletion."""


class OptionError(ObjectError):
    """An ``-object`` string (or its JSON form) that QEMU would refuse while parsing it."""


class HelpRequestError(OptionError):
    """An ``-object`` option asked for help (``help``, ``TYPE,help``) where only objects can
    be created (:func:`qompr.options.create_objects`).

    :param text: the help text QEMU would print on stdout.
    """

    def __init__(self, text: str) -> None:
        super().__init__("An -object option asks for help instead of an object")
        self.text = text


class ScsiError(QomprError, ValueError):
    """Bytes that do not decode as the SCSI structure asked for.

    Decoding hostile input never raises anything else.
    """


class PluginError(QomprError):
    """A plugin that cannot be loaded, or that registers something invalid."""


class ProtocolError(QomprError):
    """The qemu-pr-helper socket protocol was violated."""


class LocalProtocolError(ProtocolError):
    """This side asked the protocol core to do something the protocol forbids."""


class RemoteProtocolError(ProtocolError):
    """The peer sent something the protocol forbids; the connection must be closed."""


class ConnectError(QomprError, OSError):
    """A manager could not reach its backend.

    :param message: QEMU-style text (``Failed to connect to '/run/x.sock': No such file ...``).
    :param cause: the underlying exception, if any.
    """

    def __init__(
        self, message: str, cause: BaseException | None = None, *, hint: str | None = None
    ) -> None:
        super().__init__(message, hint=hint)
        self.cause = cause


class StateError(QomprError):
    """An operation was attempted in a state that does not allow it.

    :param state: the state the object is in.
    :param required: the state the operation needs.
    """

    def __init__(self, message: str, *, state: str = "", required: str = "") -> None:
        super().__init__(message)
        self.state = state
        self.required = required
