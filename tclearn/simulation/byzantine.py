"""The one Byzantine rule of every simulation (the demo, `coalition up`, the benches): of `members` hospitals,
the last `byzantine` attack and the others are honest."""

from __future__ import annotations


def byzantine_at(members: int, byzantine: int, index: int) -> bool:
    return index >= members - byzantine
