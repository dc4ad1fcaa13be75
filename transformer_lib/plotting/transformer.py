"""Pictures for the transformer lessons (filled in with the lesson)."""
__all__: list[str] = []
