"""Checks for the decoder exercises (filled in with the lesson)."""
__all__: list[str] = []
