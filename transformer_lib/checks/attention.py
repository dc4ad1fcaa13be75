"""Checks for the attention exercises (filled in with the lesson)."""
__all__: list[str] = []
