"""Pictures for the families lessons (filled in with the lesson)."""
__all__: list[str] = []
