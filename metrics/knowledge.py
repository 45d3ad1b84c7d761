"""Knowledge: exact match of a generation against a QA item's short answer.

SemEval-2025 Task 4 compares the *whole* generation (not its first line or first sentence) with the
reference, after ``strip()`` and ``lower()`` of both. A model that answers correctly and then keeps
talking gets no credit — that is the organisers' definition, reproduced as is.
"""

from __future__ import annotations


def knowledge_exact_match(reference: str, generation: str) -> int:
    """1 if ``reference.strip().lower() == generation.strip().lower()`` else 0."""
    return int(reference.strip().lower() == generation.strip().lower())
