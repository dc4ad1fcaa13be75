"""Checks for the bert exercises (filled in with the lesson)."""
__all__: list[str] = []
