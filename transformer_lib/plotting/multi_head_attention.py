"""Pictures for the multi_head_attention lessons (filled in with the lesson)."""
__all__: list[str] = []
