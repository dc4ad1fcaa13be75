"""Self-checks for the exercises: ``check_<name>(fn)`` tests the learner's ``fn``.

Each check runs the learner's function on several cases (odd sizes, masks, a batch of 1) and
compares with the reference. See :mod:`transformer_lib.checks._core` for what a check prints,
returns and raises. One module per lesson topic; everything is re-exported here.
"""
from ._core import CheckFailed, is_reference, yours  # noqa: F401
from .start_here import *  # noqa: F401,F403
from .embeddings import *  # noqa: F401,F403
from .positional import *  # noqa: F401,F403
from .attention import *  # noqa: F401,F403
from .multi_head_attention import *  # noqa: F401,F403
from .encoder import *  # noqa: F401,F403
from .decoder import *  # noqa: F401,F403
from .transformer import *  # noqa: F401,F403
from .training import *  # noqa: F401,F403
from .translation import *  # noqa: F401,F403
from .bert import *  # noqa: F401,F403
from .gpt import *  # noqa: F401,F403
from .text_to_text import *  # noqa: F401,F403
from .pretrained import *  # noqa: F401,F403
from .scaling import *  # noqa: F401,F403
