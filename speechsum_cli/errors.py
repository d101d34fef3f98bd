"""The error types that the CLI turns into a red ``Error:`` line and an exit code.

Raise a :class:`SpeechsumError` subclass for anything the *user* can fix (bad input, a missing
file, an unsupported model). The message must say what, where, expected vs found, and the next
step. Unexpected exceptions are not wrapped: they keep their traceback.

Exit codes (the README's troubleshooting section lists them): 0 done; 1 bad input or a model that
cannot be used (:class:`SpeechsumError`); 2 a usage error (unknown flag, bad value: Typer's own);
3 the run produced nothing usable (:class:`NothingUsableError`: every request failed, or more than
``--max-failed-share`` of them); 130 interrupted.
"""

from __future__ import annotations

EXIT_BAD_INPUT = 1
EXIT_NOTHING_USABLE = 3
EXIT_INTERRUPTED = 130


class SpeechsumError(Exception):
    """Base class: a problem the user can fix, reported without a traceback."""

    exit_code: int = EXIT_BAD_INPUT


class InputError(SpeechsumError):
    """A flag, file, column or value given by the user is wrong."""


class AudioError(InputError):
    """An audio file is missing, unreadable, empty or not audio."""


class ModelError(SpeechsumError):
    """A checkpoint cannot be found, loaded or used."""


class UnsupportedFamilyError(ModelError):
    """A checkpoint's ``config.model_type`` has no family in ``speechsum_cli.families``."""


class NothingUsableError(SpeechsumError):
    """A run finished but produced nothing usable: every request or row failed, or more than
    ``--max-failed-share`` of them. No output a later run could take for finished was written."""

    exit_code = EXIT_NOTHING_USABLE
