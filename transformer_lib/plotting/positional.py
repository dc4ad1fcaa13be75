"""Pictures for the positional lessons (filled in with the lesson)."""
__all__: list[str] = []
