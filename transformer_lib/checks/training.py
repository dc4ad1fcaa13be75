"""Checks for the training exercises (filled in with the lesson)."""
__all__: list[str] = []
