"""The error of a record value that a decoder cannot read (a parse exception of the task)."""

from __future__ import annotations

__all__ = ["DecodeError"]


class DecodeError(ValueError):
    """The record is unparseable; the message says why (it goes into parseErrors)."""
