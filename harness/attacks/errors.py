"""The error every attack raises for a problem the user can fix (bad settings, an unsuitable model)."""

from __future__ import annotations


class AttackError(ValueError):
    """An attack cannot run with these settings on this model; the message says what was expected."""
