"""Checks for the multi_head_attention exercises (filled in with the lesson)."""
__all__: list[str] = []
