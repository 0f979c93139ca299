"""Numbers as the rendered docs show them."""

from __future__ import annotations


def fixed(value: float | None, digits: int = 1) -> str:
    """``value`` with ``digits`` decimals, or "-" when it is unknown."""
    return "-" if value is None else f"{value:.{digits}f}"
