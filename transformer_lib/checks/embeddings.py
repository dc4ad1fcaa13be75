"""Checks for the embeddings exercises (filled in with the lesson)."""
__all__: list[str] = []
