"""Checks for the encoder exercises (filled in with the lesson)."""
__all__: list[str] = []
