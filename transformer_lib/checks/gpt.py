"""Checks for the gpt exercises (filled in with the lesson)."""
__all__: list[str] = []
