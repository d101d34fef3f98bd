"""The error types that the CLI turns into a red ``Error:`` line and exit code 1.

Raise a :class:`SpeechsumError` subclass for anything the *user* can fix (bad input, a missing
file, an unsupported model). The message must say what, where, expected vs found, and the next
step. Unexpected exceptions are not wrapped: they keep their traceback.
"""

from __future__ import annotations


class SpeechsumError(Exception):
    """Base class: a problem the user can fix, reported without a traceback."""


class InputError(SpeechsumError):
    """A flag, file, column or value given by the user is wrong."""


class AudioError(InputError):
    """An audio file is missing, unreadable, empty or not audio."""


class ModelError(SpeechsumError):
    """A checkpoint cannot be found, loaded or used."""


class UnsupportedFamilyError(ModelError):
    """A checkpoint's ``config.model_type`` has no family in ``speechsum_cli.families``."""
