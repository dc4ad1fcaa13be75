"""Pictures for the encoder lessons (filled in with the lesson)."""
__all__: list[str] = []
