"""Checks for the pretrained exercises (filled in with the lesson)."""
__all__: list[str] = []
