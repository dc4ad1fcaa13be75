"""Pictures for the attention lessons (filled in with the lesson)."""
__all__: list[str] = []
