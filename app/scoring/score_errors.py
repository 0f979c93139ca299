"""The errors a scoring job stops with; each is a ``FusionServeError`` (the CLI prints it and
exits 1)."""

from __future__ import annotations

from app.errors import FusionServeError


class ScoreError(FusionServeError):
    """A scoring job cannot go on."""


class ScoreInputError(ScoreError):
    """The input table cannot be read as asked: unknown format, missing columns."""


class JobMismatch(ScoreError):
    """The output directory holds another job (other bundle, input or options): resuming it
    would mix two jobs' rows. ``--force`` starts over."""


class ErrorRateExceeded(ScoreError):
    """More rows failed than ``--max-error-rate`` allows; the shards written stay committed."""
