"""Lesson 09: translating real English sentences into French, and measuring it.

Legend: B batch, S source length, T target length, V vocabulary size.

The data are 14,613 English-French sentence pairs from the Tatoeba Project (as released by
www.manythings.org/anki, CC-BY 2.0 France; attribution: www.manythings.org/anki and
tatoeba.org), shipped in ``data_files/tatoeba_en_fr.tsv`` with their licence beside it:
sentences of at most 10 words whose English begins with "I am / I'm", "he is / he's", "she
is / she's", "you are / you're", "we are / we're" or "they are / they're". The file marks a
train/dev/test split made **by English sentence** (``tools/extract_translation_subset.py``
documents the rule and the seed): no English sentence is in two splits, and each test sentence
keeps all its French translations as references.

:class:`TranslationTask` batches the pairs exactly like lesson 08's :class:`~transformer_lib.data.DateTask`
(same :class:`~transformer_lib.data.Batch`, bucketing and endless :class:`~transformer_lib.data.BatchStream`),
with one tokenizer for both languages. Scores come from **sacrebleu** (Post, 2018), the field's
reference implementation, on detokenized text against every reference: :func:`bleu`,
:func:`chrf`, and :func:`exact_match_any` as a second view.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from importlib import resources
from typing import Callable, Sequence

import torch

from .bpe import SPACE, normalize_text, pretokenize
from .data import BatchStream, DateTask
from .decoding import beam_search, greedy_decode
from .runtime import smoke_test_mode
from .tokenizer import Tokenizer
from .validation import check_positive_int

__all__ = ["Pair", "load_pairs", "group_references", "TranslationTask", "translate", "bleu", "chrf",
           "exact_match_any", "BleuTracker", "unseen_words", "repeats_ngram", "step_seconds", "DATA_FILE", "SPLITS"]

DATA_FILE = "tatoeba_en_fr.tsv"
#: The most tokens :func:`translate` generates in the smoke test (``TRANSFORMER_COURSE_SMOKE=1``): a model
#: trained for a few steps never writes ``<eos>``, and decoding 459 sentences to 32 tokens four times is slow.
SMOKE_MAX_LEN = 6
SPLITS = ("train", "dev", "test")


@dataclass(frozen=True)
class Pair:
    """One English sentence (``source``) and one of its French translations (``target``)."""

    source: str
    target: str
    split: str


def load_pairs(path=None) -> list[Pair]:
    """Every pair of the shipped subset (or of the file at ``path``), in file order."""
    if path is None:
        text = (resources.files("transformer_lib") / "data_files" / DATA_FILE).read_text(encoding="utf-8")
    else:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    pairs = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line or line.startswith("#"):
            continue
        columns = line.split("\t")
        if len(columns) != 3 or columns[0] not in SPLITS:
            raise ValueError(f"line {number}: expected split<TAB>english<TAB>french with split in {SPLITS}, "
                             f"got {line[:80]!r}")
        pairs.append(Pair(columns[1], columns[2], columns[0]))
    return pairs


def group_references(pairs: Sequence[Pair]) -> tuple[list[str], list[list[str]]]:
    """``(sources, references)``: each distinct source once (in order of first appearance) with
    the list of all its targets, for multi-reference scoring."""
    grouped: dict[str, list[str]] = {}
    for p in pairs:
        grouped.setdefault(p.source, []).append(p.target)
    return list(grouped), list(grouped.values())


class TranslationTask:
    """English -> French pairs with a tokenizer, the three splits and lesson 08's batching.

    Args:
        tokenizer: one tokenizer for both languages (e.g. a :class:`~transformer_lib.bpe.BPETokenizer`
            trained on the training split), or a pair ``(source tokenizer, target tokenizer)``.
        pairs: the pairs (default: :func:`load_pairs`).

    ``task.train``, ``task.dev``, ``task.test`` are lists of :class:`Pair`; ``task.batches(...)``,
    ``task.batch_stream(...)``, ``task.make_batch(...)`` and ``task.encode_sources(...)`` work
    as for :class:`~transformer_lib.data.DateTask`.
    """

    def __init__(self, tokenizer: Tokenizer | tuple[Tokenizer, Tokenizer], pairs: Sequence[Pair] | None = None):
        src_tok, tgt_tok = tokenizer if isinstance(tokenizer, tuple) else (tokenizer, tokenizer)
        for name, tok in (("source tokenizer", src_tok), ("target tokenizer", tgt_tok)):
            if not isinstance(tok, Tokenizer):
                raise TypeError(f"the {name} must be a Tokenizer (or a BPETokenizer), got {type(tok).__name__}")
        if src_tok.pad_id != 0 or tgt_tok.pad_id != 0:
            raise ValueError("both tokenizers must have <pad> = 0")
        pairs = load_pairs() if pairs is None else list(pairs)
        self.train, self.dev, self.test = ([p for p in pairs if p.split == name] for name in SPLITS)
        if not (self.train and self.dev and self.test):
            raise ValueError(f"pairs must hold every split {SPLITS}, got {len(self.train)}, {len(self.dev)} and "
                             f"{len(self.test)} pairs")
        self.src_tokenizer, self.tgt_tokenizer = src_tok, tgt_tok
        self.pad_id = 0
        self._encoded: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}

    def split(self, name: str) -> list[Pair]:
        """The pairs of ``"train"``, ``"dev"`` or ``"test"``."""
        if name not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {name!r}")
        return getattr(self, name)

    def references(self, name: str) -> tuple[list[str], list[list[str]]]:
        """``(sources, references)`` of a split, each English sentence once with all its French translations."""
        return group_references(self.split(name))

    def __repr__(self) -> str:
        return (f"TranslationTask(train={len(self.train)}, dev={len(self.dev)}, test={len(self.test)} pairs; "
                f"vocabulary {len(self.src_tokenizer)} / {len(self.tgt_tokenizer)})")

    # lesson 08's encoding and batching, the same code (a pair has .source and .target like an Example)
    encode_sources = DateTask.encode_sources
    _encode, _batch = DateTask._encode, DateTask._batch
    make_batch = DateTask.make_batch
    encoded = DateTask.encoded
    batches = DateTask.batches

    def batch_stream(self, batch_size: int, bucket: bool = True, seed: int = 0) -> BatchStream:
        """Endless training batches for :func:`transformer_lib.training.train` (see ``DateTask.batch_stream``)."""
        return BatchStream(self, batch_size, bucket=bucket, seed=seed)


@torch.no_grad()
def translate(model, task: TranslationTask, sources: Sequence[str], beam_size: int = 1, alpha: float = 0.0,
              max_len: int = 32, batch_size: int = 256, decode: Callable | None = None,
              new_cache: Callable | None = None) -> list[str]:
    """Translate ``sources`` (a list of English texts) into French texts.

    Args:
        model: a trained encoder-decoder (a :class:`~transformer_lib.transformer.Transformer`
            or any model with the interface of :mod:`transformer_lib.decoding`).
        beam_size: 1 decodes greedily, more uses beam search with length penalty ``alpha``.
        max_len: the most tokens to generate per sentence (at most :data:`SMOKE_MAX_LEN` in the
            smoke test, ``TRANSFORMER_COURSE_SMOKE=1``).
        batch_size: sentences decoded together (sorted by length first, to pad little).
        decode: ``decode(model, src, max_len) -> ids`` to use instead (e.g. your own greedy decoder).
        new_cache: ``new_cache(model)`` makes an empty key/value cache for each batch (lesson 11's
            ``kv_cache.new_cache``): every decoding step then feeds only the newest token. The
            same translations come out, faster. ``None`` (the default) re-reads the whole prefix.
    """
    if isinstance(sources, str):
        raise TypeError("sources must be a list of texts, got a single str: wrap it in a list")
    check_positive_int("beam_size", beam_size)
    check_positive_int("batch_size", batch_size)
    if decode is not None and new_cache is not None:
        raise ValueError("give decode= or new_cache=, not both (your own decoder makes its own cache)")
    if new_cache is not None and not callable(new_cache):
        raise TypeError(f"new_cache must be a function model -> empty cache (kv_cache.new_cache), "
                        f"got {type(new_cache).__name__}")
    if decode is None:
        def cache():
            return None if new_cache is None else new_cache(model)
        decode = (lambda m, src, n: greedy_decode(m, src, n, cache=cache())) if beam_size == 1 else \
            (lambda m, src, n: beam_search(m, src, n, beam_size=beam_size, alpha=alpha, cache=cache())[0])
    if smoke_test_mode():
        max_len = min(max_len, SMOKE_MAX_LEN)
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    lengths = [len(task.src_tokenizer.encode(s)) for s in sources]
    order = sorted(range(len(sources)), key=lambda i: lengths[i])
    out: list[str] = [""] * len(sources)
    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size]
        src = task.encode_sources([sources[i] for i in rows]).to(device)             # (B, S)
        for i, text in zip(rows, task.tgt_tokenizer.decode_batch(decode(model, src, max_len).cpu())):
            out[i] = text
    model.train(was_training)
    return out


def _reference_streams(references: Sequence[Sequence[str]]) -> list[list[str | None]]:
    """sacrebleu's layout: stream k holds every sentence's k-th reference (``None`` where a
    sentence has fewer references)."""
    most = max((len(r) for r in references), default=0)
    return [[r[k] if k < len(r) else None for r in references] for k in range(most)]


def _check_scoring_args(hypotheses, references) -> None:
    if isinstance(hypotheses, str) or isinstance(references, str):
        raise TypeError("hypotheses and references must be lists (one entry per sentence), got a str")
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses for {len(references)} lists of references")
    for refs in references:
        if isinstance(refs, str) or not refs:
            raise ValueError("each sentence's references must be a non-empty list of texts, e.g. [['Je suis prêt.']]")


def bleu(hypotheses: Sequence[str], references: Sequence[Sequence[str]]):
    """Corpus BLEU of sacrebleu (default settings: 13a tokenization, case-sensitive, up to
    4-grams, brevity penalty) against every reference of each sentence. Returns sacrebleu's
    ``BLEUScore`` (``.score`` in 0-100, ``.precisions``, ``.bp``, ``.sys_len``, ``.ref_len``)."""
    import sacrebleu  # imported here: only lesson 09 needs it
    _check_scoring_args(hypotheses, references)
    return sacrebleu.corpus_bleu(list(hypotheses), _reference_streams(references))


def chrf(hypotheses: Sequence[str], references: Sequence[Sequence[str]]):
    """Corpus chrF of sacrebleu (character 6-grams, beta = 2) against every reference.
    Returns sacrebleu's ``CHRFScore`` (``.score`` in 0-100)."""
    import sacrebleu
    _check_scoring_args(hypotheses, references)
    return sacrebleu.corpus_chrf(list(hypotheses), _reference_streams(references))


def exact_match_any(hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    """Fraction of hypotheses equal to one of their references, after :func:`~transformer_lib.bpe.normalize_text`
    (a no-break space before "!" counts as a space, ’ as ')."""
    _check_scoring_args(hypotheses, references)
    hits = sum(normalize_text(h) in {normalize_text(r) for r in refs} for h, refs in zip(hypotheses, references))
    return hits / max(len(hypotheses), 1)


class BleuTracker:
    """An ``evaluate`` callback for :func:`~transformer_lib.training.train`: greedy BLEU on a
    split, and the training time so far, the time spent in these evaluations not counted.

    Make it right before calling ``train``: the clocks start when it is made. Each call returns
    ``{name: BLEU, "seconds": wall-clock training seconds so far, "cpu_seconds": the CPU time
    this process spent training so far}``. On one thread of an otherwise idle machine the two
    times agree; when other programs share the CPU, the CPU time still measures the work done.
    """

    def __init__(self, task: TranslationTask, split: str = "dev", name: str = "dev_bleu", max_len: int = 32,
                 new_cache: Callable | None = None):
        self.task, self.name, self.max_len, self.new_cache = task, name, max_len, new_cache
        self.sources, self.references = task.references(split)
        self.start, self.cpu_start = time.perf_counter(), time.process_time()
        self.eval_seconds = self.eval_cpu_seconds = 0.0

    def __call__(self, model) -> dict[str, float]:
        begin, cpu_begin = time.perf_counter(), time.process_time()
        outputs = translate(model, self.task, self.sources, max_len=self.max_len, new_cache=self.new_cache)
        score = bleu(outputs, self.references).score
        trained = begin - self.start - self.eval_seconds
        cpu_trained = cpu_begin - self.cpu_start - self.eval_cpu_seconds
        self.eval_seconds += time.perf_counter() - begin
        self.eval_cpu_seconds += time.process_time() - cpu_begin
        return {self.name: score, "seconds": trained, "cpu_seconds": cpu_trained}


def unseen_words(task: TranslationTask, text: str) -> list[str]:
    """The words of ``text`` that never occur in the training sources (the model can still read
    them, from BPE pieces, but has never learned what they mean)."""
    from .bpe import pretokenize
    if not hasattr(task, "_train_words"):
        task._train_words = {w.lstrip(SPACE).lower() for p in task.train for w in pretokenize(p.source)}
    return [w.lstrip(SPACE) for w in pretokenize(text)
            if w.lstrip(SPACE).lower() not in task._train_words and any(c.isalnum() for c in w)]


def repeats_ngram(text: str, n: int = 2) -> bool:
    """True when ``text`` repeats a sequence of ``n`` words right after itself ("est est",
    "je suis je suis"): the typical repetition loop of greedy decoding."""
    words = text.split()
    return any(words[i:i + n] == words[i + n:i + 2 * n] for i in range(len(words) - 2 * n + 1))


def step_seconds(model, length: int, batch_size: int = 64, repeats: int = 3, threads: int = 1, seed: int = 0) -> float:
    """Seconds of one training step's forward and backward pass on a random batch whose sources
    and targets all have ``length`` tokens, on ``threads`` CPU threads: the fastest of
    ``repeats`` runs after one warm-up run (the minimum is the least disturbed by other programs).
    The weights do not change (no optimiser step)."""
    check_positive_int("length", length)
    check_positive_int("batch_size", batch_size)
    check_positive_int("repeats", repeats)
    check_positive_int("threads", threads)
    c = model.config
    g = torch.Generator().manual_seed(seed)
    device = next(model.parameters()).device
    src = torch.randint(4, c.src_vocab_size, (batch_size, length), generator=g).to(device)   # (B, S), no padding
    tgt = torch.randint(4, c.tgt_vocab_size, (batch_size, length), generator=g).to(device)   # (B, T)
    before, was_training = torch.get_num_threads(), model.training
    torch.set_num_threads(threads)
    model.train()
    times = []
    try:
        for _ in range(repeats + 1):
            start = time.perf_counter()
            logits = model(src, tgt)                                                        # (B, T, V)
            torch.nn.functional.cross_entropy(logits.flatten(0, 1), tgt.flatten()).backward()
            times.append(time.perf_counter() - start)
            model.zero_grad(set_to_none=True)
    finally:
        torch.set_num_threads(before)
        model.train(was_training)
    return min(times[1:])
