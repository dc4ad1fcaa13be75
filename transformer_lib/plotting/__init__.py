"""Pictures and interactive explorers for the lessons (the only matplotlib/ipywidgets users).

One module per lesson topic; everything is re-exported here, so a notebook writes
``from transformer_lib.plotting import plot_attention``. The first cell of every lesson imports
:func:`~transformer_lib.runtime.setup_notebook` from here too.
"""
from ..runtime import setup_notebook  # noqa: F401
from .core import *  # noqa: F401,F403
from .course import *  # noqa: F401,F403
from .embeddings import *  # noqa: F401,F403
from .positional import *  # noqa: F401,F403
from .attention import *  # noqa: F401,F403
from .multi_head_attention import *  # noqa: F401,F403
from .encoder import *  # noqa: F401,F403
from .transformer import *  # noqa: F401,F403
from .training import *  # noqa: F401,F403
from .translation import *  # noqa: F401,F403
from .families import *  # noqa: F401,F403
from .pretrained import *  # noqa: F401,F403
from .scaling import *  # noqa: F401,F403
