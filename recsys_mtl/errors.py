"""Errors the CLI turns into one clear line (no traceback unless ``--debug``)."""

from __future__ import annotations


class RecsysMTLError(Exception):
    """Base of every user-facing error: the message names the file, column or field at fault."""


class SpecError(RecsysMTLError):
    """A feature spec or pipeline file is malformed or inconsistent."""


class DataError(RecsysMTLError):
    """A data file is missing, empty, or does not match the spec."""


class LeakageError(SpecError):
    """A label, or a column derived from it, is listed as a feature."""
