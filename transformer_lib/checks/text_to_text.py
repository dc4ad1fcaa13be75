"""Checks for the text_to_text exercises (filled in with the lesson)."""
__all__: list[str] = []
