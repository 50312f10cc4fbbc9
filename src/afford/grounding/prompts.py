"""Text prompts for the CLIP object affinity maps (REFERENCE_NOTES A, "Prompts").

One prompt each, no template ensemble. Class names keep their underscores.
"""

from __future__ import annotations

from afford.errors import AffordError


def _check(cls: str) -> str:
    if not isinstance(cls, str) or not cls.strip():
        raise AffordError(f"prompt: affordance name must be a non-empty string, got {cls!r}")
    return cls


def action_prompt(cls: str) -> str:
    """Action prompt: ``"an item to {cls} with"``; no extra " with" if ``cls`` contains "with".

    >>> action_prompt("hold"), action_prompt("cut_with")
    ('an item to hold with', 'an item to cut_with')
    """
    cls = _check(cls)
    return f"an item to {cls}" if "with" in cls else f"an item to {cls} with"


def entity_prompt(cls: str) -> str:
    """Exocentric entity prompt: ``"a person {cls} an item"``."""
    return f"a person {_check(cls)} an item"
