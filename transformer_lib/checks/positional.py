"""Checks for the positional exercises (filled in with the lesson)."""
__all__: list[str] = []
