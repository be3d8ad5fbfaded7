"""Argument helpers shared by the command modules: integer lists and range checks that name the option."""

from __future__ import annotations


def int_list(text: str, hi: int, option: str) -> list[int]:
    """``"0,2,5-9"`` -> sorted distinct ints, each in ``0..hi-1``; ValueError naming ``option`` otherwise."""
    out: list[int] = []
    for part in text.split(","):
        part = part.strip()
        try:
            a, _, b = part.partition("-")
            lo_, hi_ = int(a), int(b) if b else int(a)
        except ValueError:
            raise ValueError(f"{option}: cannot parse {part!r} (use e.g. 0,2,5-9)") from None
        if not 0 <= lo_ <= hi_ < hi:
            raise ValueError(f"{option}: {part!r} is outside 0..{hi - 1}")
        out.extend(range(lo_, hi_ + 1))
    return sorted(set(out))


def at_least(args, minimum: float, *names: str) -> None:
    """ValueError naming the first of ``names`` (attribute names of ``args``) that is below ``minimum``."""
    for name in names:
        value = getattr(args, name)
        if value is not None and value < minimum:
            raise ValueError(f"--{name.replace('_', '-')} must be >= {minimum:g}, got {value}")
