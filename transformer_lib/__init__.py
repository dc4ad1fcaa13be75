"""transformer_lib: the Transformer built step by step in the course's lessons.

Modules follow the lessons, and a module imports only its own and earlier lessons' (see
``tests/test_layering.py``): ``runtime`` and ``validation`` (00), ``tokenizer`` and ``embeddings``
(01), ``positional`` (02), ``attention`` and ``masks`` (03), ``multi_head_attention`` (04),
``feed_forward``, ``layer_norm``, ``encoder`` and ``config`` (05), ``decoder`` (06), ``transformer``
(07), ``training``, ``data``, ``decoding`` and ``checkpoint`` (08), ``bert`` and ``mlm`` (10),
``gpt``, ``sampling`` and ``kv_cache`` (11), ``text_to_text`` (12), ``pretrained`` and
``sentence_encoder`` (13), ``scaling`` (14). ``checks`` holds the exercise checks and ``plotting``
the pictures (the only package that imports matplotlib).

Conventions: batch first; masks are bool with **True = may attend**.
"""
from .attention import scaled_dot_product_attention
from .config import LayerConfig
from .decoder import Decoder, DecoderLayer
from .embeddings import TokenEmbedding
from .encoder import Encoder, EncoderLayer
from .feed_forward import FeedForward
from .kv_cache import KVCache, LayerCache
from .layer_norm import LayerNorm
from .masks import causal_mask, from_torch_mask, padding_mask, to_torch_mask
from .multi_head_attention import MultiHeadAttention, merge_heads, split_heads
from .positional import LearnedPositionalEmbedding, PositionalEncoding, sinusoidal_positional_encoding
from .tokenizer import Tokenizer
from .transformer import Transformer, TransformerConfig
from .runtime import pick_device, seed_everything
from .utils import count_parameters

__version__ = "0.1.0"

__all__ = [
    "Tokenizer", "TokenEmbedding", "sinusoidal_positional_encoding", "PositionalEncoding",
    "LearnedPositionalEmbedding", "scaled_dot_product_attention", "causal_mask", "padding_mask",
    "to_torch_mask", "from_torch_mask", "MultiHeadAttention", "split_heads", "merge_heads",
    "FeedForward", "LayerNorm", "LayerConfig", "EncoderLayer", "Encoder", "DecoderLayer", "Decoder",
    "Transformer", "TransformerConfig", "KVCache", "LayerCache", "count_parameters",
    "pick_device", "seed_everything",
]
