# SPDX-License-Identifier: MIT
"""The one exception tree: every error is a QomprError whose str() is its message."""

from __future__ import annotations

import pickle

from qompr import errors


def test_str_is_the_message_and_pickling_keeps_it() -> None:
    made = [
        errors.QomprError("Parameter 'id' is missing", hint="a hint"),
        errors.OptionError("Invalid parameter 'foo'"),
        errors.HelpRequestError("pr-manager-helper options:\n"),
        errors.ConnectError("Failed to connect to '/x'", OSError(2, "No such file")),
        errors.StateError("closed", state="closed", required="open"),
        errors.ScsiError("short CDB"),
    ]
    for exc in made:
        assert str(exc) == exc.message
        assert isinstance(exc, errors.QomprError)
        again = pickle.loads(pickle.dumps(exc))
        assert str(again) == str(exc) and type(again) is type(exc)


def test_help_request_holds_the_text() -> None:
    exc = errors.HelpRequestError("There are no options for pr-manager.\n")
    assert exc.text == "There are no options for pr-manager.\n"
    assert isinstance(exc, errors.OptionError)
