"""What a learner sees in Jupyter when a check fails: run failing checks in a real kernel.

The rendered error must show the learner's own line, the check's diagnosis exactly once, and no
line or path of ``transformer_lib`` (whose modules hold the answers of later lessons), also when
the learner's code fails inside a call into the library.
"""
from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
ANSI = re.compile(r"\x1b\[[0-9;]*m")

CELLS = [
    # 0: import this checkout's transformer_lib
    f"import sys\nsys.path.insert(0, {str(ROOT)!r})\nimport transformer_lib\nprint(transformer_lib.__file__)",
    "from transformer_lib.checks import check_normalize_rows, check_decoder_layer_forward, check_attention_scores",
    # 2, 3: an error in the learner's own code
    "def normalize_rows(x):\n    sums = x.sum(dim=-1)\n    return x / sums   # MY LINE 1",
    "normalize_rows = check_normalize_rows(normalize_rows)",
    # 4, 5: the learner's code fails inside the library (a transposed query reaches MultiHeadAttention)
    "def decoder_layer_forward(layer, x, memory, tgt_mask=None, memory_mask=None):\n"
    "    h = layer.self_attn(x.transpose(1, 2), x, x, mask=tgt_mask)[0]   # MY LINE 2\n"
    "    return layer.norm1(x + h)",
    "decoder_layer_forward = check_decoder_layer_forward(decoder_layer_forward)",
    # 6, 7: a wrong value, no error; k.T on a 4-D tensor also makes PyTorch warn
    "def attention_scores(q, k):\n    return q @ k.transpose(-2, -1)   # MY LINE 3",
    "attention_scores = check_attention_scores(attention_scores)",
    # 8, 9: a tuple from the attention layer added to a tensor
    "def decoder_layer_forward(layer, x, memory, tgt_mask=None, memory_mask=None):\n"
    "    return layer.norm1(x + layer.self_attn(x, x, x, mask=tgt_mask))   # MY LINE 4",
    "decoder_layer_forward = check_decoder_layer_forward(decoder_layer_forward)",
    # 10, 11: .T on a batched tensor: the warning becomes part of the diagnosis, not a stderr block
    "def attention_scores(q, k):\n    return q @ k.T / q.shape[-1] ** 0.5   # MY LINE 5",
    "attention_scores = check_attention_scores(attention_scores)",
]


@pytest.fixture(scope="module")
def executed():
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source) for source in CELLS])
    NotebookClient(nb, timeout=300, allow_errors=True, kernel_name="python3").execute()
    return nb


def rendered(nb, index: int) -> tuple[str, str]:
    """(the error's rendered traceback without colours, the check's message) of cell ``index``."""
    errors = [o for o in nb.cells[index].outputs if o.output_type == "error"]
    assert len(errors) == 1, nb.cells[index].outputs
    return ANSI.sub("", "\n".join(errors[0].traceback)), errors[0].evalue


def test_the_kernel_imports_this_checkout(executed):
    out = "".join(o.get("text", "") for o in executed.cells[0].outputs)
    assert out.strip().startswith(str(ROOT))


@pytest.mark.parametrize("cell, my_line, words", [
    (3, "MY LINE 1", "x.sum(dim=-1) without keepdim=True"),
    (5, "MY LINE 2", "raised ValueError"),
    (7, "MY LINE 3", "not scaled"),
    (9, "MY LINE 4", "take the output with [0]"),
    (11, "MY LINE 5", "transpose(-2, -1)"),
], ids=["own-error", "error-inside-the-library", "wrong-value", "tuple", "k.T-warning"])
def test_a_failing_check_shows_the_learners_line_one_diagnosis_and_no_library_source(executed, cell, my_line, words):
    text, message = rendered(executed, cell)
    assert my_line in text, text
    assert words in message
    diagnosis = message.splitlines()[0]
    assert text.count(diagnosis) == 1, text                   # the diagnosis once (no chained error repeating it)
    assert "transformer_lib/" not in text and "transformer_lib\\" not in text, text
    assert "site-packages" not in text, text
    assert "The above exception" not in text and "During handling" not in text, text
    streams = "".join(o.get("text", "") for o in executed.cells[cell].outputs if o.output_type == "stream")
    assert "Warning" not in streams, streams                    # no warning the learner cannot act on
