#!/usr/bin/env python3
"""Rebuild lesson 09's English-French subset from the full Tatoeba file (run once, by a maintainer).

The source is ``fra.txt`` of manythings.org/anki's ``fra-eng.zip``, release 2019-04-07
(167,130 tab-separated pairs, English first; sha256 of ``fra.txt`` below). Licence: CC-BY 2.0
France; attribution: www.manythings.org/anki and tatoeba.org (see the LICENSE file written
beside the subset). A complete copy of the zip is in the public GitHub repository
``modelexlab/data``; several other copies on GitHub are truncated, so the script checks the
pair count and the hash. It writes only the subset; the full file stays outside the course.

    python3 tools/extract_translation_subset.py /path/to/fra-eng.zip      # or /path/to/fra.txt

**The rule** (:func:`keep_pair`). A pair is kept when

1. both sides have at most 10 words, a word being a run of non-space characters
   (``str.split()``, which also splits at no-break spaces, so the French ``"malade !"`` is two
   words), and
2. the English side, lower-cased and with typographic apostrophes (’ and ‘) read as ``'``,
   begins with one of :data:`ENGLISH_PREFIXES` followed by a space: "i am / i'm", "he is /
   he's", "she is / she's", "you are / you're", "we are / we're", "they are / they're".

On the 2019-04-07 file this keeps **14,613 pairs** with **9,180 distinct English sentences**,
the numbers issue 18 asks for. (Without reading the typographic apostrophes as ``'`` the count
is 14,610 pairs / 9,177 sentences: "She’s a doctor now.", "He’s shivering because of the
cold." and "I‘m ironing my handkerchiefs." would be lost.)

**The split** (:func:`split_by_english`): by English sentence, so that no English sentence is in
two splits and every French reference of a test sentence is in the test split (multi-reference
BLEU). The distinct English sentences, in file order, are shuffled with ``random.Random(SEED)``;
the first 5 % (459) are the test split, the next 5 % (459) the development split, the other
8,262 the training split.

The output keeps the pairs in file order, one per line, ``split<TAB>english<TAB>french``, after
a few comment lines starting with ``#``. Texts are written exactly as in ``fra.txt``.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import random
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "transformer_lib" / "data_files" / "tatoeba_en_fr.tsv"

SOURCE_SHA256 = "0bb85dbaa1c896844649094d7eaf2e34bee34e84fe362b26ce7e8f2e12aae104"  # fra.txt, 2019-04-07
SOURCE_PAIRS = 167_130
EXPECTED_PAIRS, EXPECTED_ENGLISH = 14_613, 9_180

MAX_WORDS = 10
ENGLISH_PREFIXES = ("i am ", "i'm ", "he is ", "he's ", "she is ", "she's ",
                    "you are ", "you're ", "we are ", "we're ", "they are ", "they're ")
SPLITS = (("test", 0.05), ("dev", 0.05))        # the rest is "train"
SEED = 0

HEADER = """\
# Lesson 09's English-French sentence pairs: a subset of the Tatoeba pairs released by
# www.manythings.org/anki (fra.txt, 2019-04-07), CC-BY 2.0 France; attribution:
# www.manythings.org/anki and tatoeba.org (see tatoeba_en_fr_LICENSE.txt beside this file).
# Built by tools/extract_translation_subset.py: {pairs} pairs, {english} distinct English sentences,
# split by English sentence (seed {seed}): {counts}.
# One pair per line: split<TAB>english<TAB>french. Lines starting with # are comments.
"""


def word_count(text: str) -> int:
    """Words of ``text``: runs of non-space characters (no-break spaces separate words too)."""
    return len(text.split())


def normalize_english(text: str) -> str:
    """Lower-case, typographic apostrophes (’ and ‘) read as ``'``: what the prefix rule looks at."""
    return text.lower().replace("\u2019", "'").replace("\u2018", "'")


def keep_pair(english: str, french: str) -> bool:
    """The subset's rule: both sides at most 10 words, English starting with a listed prefix."""
    return (word_count(english) <= MAX_WORDS and word_count(french) <= MAX_WORDS
            and normalize_english(english).startswith(ENGLISH_PREFIXES))


def read_pairs(path: str | Path) -> list[tuple[str, str]]:
    """The ``(english, french)`` pairs of ``fra.txt`` or of ``fra-eng.zip`` (which holds it),
    after checking the release's hash and pair count."""
    path = Path(path)
    if path.suffix == ".zip":
        with zipfile.ZipFile(path) as archive:
            names = [n for n in archive.namelist() if n.endswith("fra.txt") and "__MACOSX" not in n]
            if len(names) != 1:
                raise ValueError(f"{path} should hold one fra.txt, found {names}")
            data = archive.read(names[0])
    else:
        data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != SOURCE_SHA256:
        raise ValueError(f"{path}: sha256 {digest} is not the 2019-04-07 release's {SOURCE_SHA256} "
                         f"(a truncated or different copy?)")
    pairs = []
    for number, line in enumerate(io.StringIO(data.decode("utf-8")), start=1):
        columns = line.rstrip("\n").split("\t")
        if len(columns) != 2:
            raise ValueError(f"{path}, line {number}: expected 2 tab-separated columns, got {len(columns)}")
        pairs.append((columns[0], columns[1]))
    if len(pairs) != SOURCE_PAIRS:
        raise ValueError(f"{path} holds {len(pairs)} pairs, the 2019-04-07 release {SOURCE_PAIRS}")
    return pairs


def split_by_english(englishes: list[str], seed: int = SEED) -> dict[str, str]:
    """``{english sentence: "train" | "dev" | "test"}``: the distinct sentences in order of first
    appearance, shuffled with ``random.Random(seed)``, cut 5 % test, 5 % dev, the rest train."""
    distinct = list(dict.fromkeys(englishes))
    random.Random(seed).shuffle(distinct)
    split, start = {}, 0
    for name, fraction in SPLITS:
        size = round(fraction * len(distinct))
        split.update((e, name) for e in distinct[start:start + size])
        start += size
    split.update((e, "train") for e in distinct[start:])
    return split


def subset_lines(pairs: list[tuple[str, str]], seed: int = SEED) -> list[str]:
    """The subset file's lines (header included) for the full list of pairs."""
    kept = [(e, f) for e, f in pairs if keep_pair(e, f)]
    split = split_by_english([e for e, _ in kept], seed)
    counts = {name: sum(1 for e, _ in kept if split[e] == name) for name in ("train", "dev", "test")}
    sentences = {name: sum(1 for s in split.values() if s == name) for name in counts}
    header = HEADER.format(pairs=len(kept), english=len(split), seed=seed, counts=", ".join(
        f"{name} {counts[name]} pairs / {sentences[name]} sentences" for name in counts))
    return header.splitlines() + [f"{split[e]}\t{e}\t{f}" for e, f in kept]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", help="fra-eng.zip or fra.txt (2019-04-07 release)")
    parser.add_argument("--out", default=str(OUT), help=f"where to write the subset (default {OUT})")
    args = parser.parse_args(argv)
    lines = subset_lines(read_pairs(args.source))
    rows = [line for line in lines if not line.startswith("#")]
    english = {row.split("\t")[1] for row in rows}
    if (len(rows), len(english)) != (EXPECTED_PAIRS, EXPECTED_ENGLISH):
        print(f"expected {EXPECTED_PAIRS} pairs / {EXPECTED_ENGLISH} sentences, got {len(rows)} / {len(english)}",
              file=sys.stderr)
        return 1
    Path(args.out).write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {args.out}: {len(rows)} pairs, {len(english)} distinct English sentences")
    return 0


if __name__ == "__main__":
    sys.exit(main())
