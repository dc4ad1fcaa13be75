"""Pictures for the embeddings lessons (filled in with the lesson)."""
__all__: list[str] = []
