"""Checks for the transformer exercises (filled in with the lesson)."""
__all__: list[str] = []
