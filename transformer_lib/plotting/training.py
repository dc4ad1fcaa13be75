"""Pictures for the training lessons (filled in with the lesson)."""
__all__: list[str] = []
