"""Pictures for the pretrained lessons (filled in with the lesson)."""
__all__: list[str] = []
