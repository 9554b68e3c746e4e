"""`--softword`: each character's position (B, M, E, S) in jieba's segmentation of its window.

The Lattice LSTM paper (Zhang & Yang, ACL 2018) gave its character model the segmentation label of
each character as a small embedding ("softword"): worth about two points on its own in their
ablation. Here the segmentation is jieba's accurate mode without its HMM, `jieba.cut(text,
HMM=False)`: the most probable path through jieba's dictionary (each word's log frequency), with
runs of single ASCII letters and digits joined. Without the HMM the segmentation is a function of
the dictionary alone (no guessed words from a second model), which keeps it exact to reproduce.

`Segmenter` computes exactly what jieba.cut gives (tests/test_softword.py holds jieba as reference),
for many windows at once in numpy: jieba's per-character Python loops ran at about 20,000 characters/s
on this project's loaded CPU, slower than the bilstm itself predicts. Segmentation is done once per
window and run, like the lexicon's matching; jieba must be installed wherever such a run is used
(its dictionary is read at load time), and the run records jieba's version (`softword.json`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np

from bertner.lexicon import SEPARATOR, build_trie, codepoints, jieba_module, walk_trie

TAGS = ("B", "M", "E", "S")  # tag id = index: begins, middle of, ends a word, or is a one-character word
FILE_NAME = "softword.json"
# jieba's re_han_default: the characters its dictionary path segments; every other character is a word of
# its own, except "\r\n" (jieba's re_skip_default matches it as one).
HAN_FIRST, HAN_LAST = 0x4E00, 0x9FD5
HAN_ASCII = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+#&._%-")
ASCII_SPACE = " \t\n\r\x0b\x0c"
ENGLISH = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")  # jieba's re_eng


class Segmenter:
    """`jieba.cut(text, HMM=False)` for many texts at once, as one B/M/E/S tag per character."""

    def __init__(self, purpose: str = "--softword"):
        jieba = jieba_module(purpose)
        self.jieba_version = str(getattr(jieba, "__version__", "unknown"))
        frequencies, total = read_jieba_dictionary(Path(jieba.__file__).parent / "dict.txt")
        words = [word for word, frequency in frequencies.items() if frequency > 0]
        # jieba.Tokenizer.calc: a word scores log(frequency) - log(total), summed along the path (in the same
        # order of operations, so the sums are jieba's to the last bit).
        log_total = math.log(total)
        self.word_score = np.array([math.log(f) - log_total for f in frequencies.values() if f > 0], dtype=np.float64)
        self.unknown_score = math.log(1) - log_total  # a character that is no word: `FREQ.get(c) or 1`
        self.word_length = np.array([len(w) for w in words], dtype=np.int64)
        self.depths = build_trie(words, self.word_length)
        ascii_class = np.zeros(128, dtype=np.int8)  # 1: in jieba's han class; 2: also English
        for char in HAN_ASCII:
            ascii_class[ord(char)] = 2 if char in ENGLISH else 1
        self.ascii_class = ascii_class

    def tags(self, texts: Sequence[str]) -> list[np.ndarray]:
        """Per text, one tag id (index into TAGS) per character, int8."""
        text_starts = np.zeros(len(texts) + 1, dtype=np.int64)
        np.cumsum([len(text) + 1 for text in texts], out=text_starts[1:])
        chars = codepoints(SEPARATOR.join(texts))
        starts = self.word_starts(chars)
        # A character ends a word when the next one starts one (the separator after each text does).
        ends = np.r_[starts[1:], True]
        tags = np.where(starts, np.where(ends, 3, 0), np.where(ends, 2, 1)).astype(np.int8)
        return [tags[start:start + len(text)] for start, text in zip(text_starts[:-1], texts)]

    def word_starts(self, chars: np.ndarray) -> np.ndarray:
        """True where a word of jieba's segmentation starts."""
        n = len(chars)
        ascii_class = np.where(chars < 128, self.ascii_class[np.minimum(chars, 127)], 0)
        han = ((chars >= HAN_FIRST) & (chars <= HAN_LAST)) | (ascii_class > 0)
        english = ascii_class == 2
        # Outside the han blocks every character is a word, but "\r\n" is one.
        starts = ~han
        starts[1:] &= ~((chars[1:] == 10) & (chars[:-1] == 13))
        if not han.any():
            return starts
        # Han blocks: maximal runs of han characters; jieba segments each on its own.
        block_start = np.flatnonzero(han & ~np.r_[False, han[:-1]])
        block_end = np.flatnonzero(han & ~np.r_[han[1:], False]) + 1
        end_of = np.repeat(block_end, block_end - block_start)  # per han character, its block's end
        han_index = np.flatnonzero(han)
        # Candidate words (jieba's DAG): dictionary words inside a block, and any character that starts none.
        word_ends, words = walk_trie(self.depths, chars)
        word_starts = word_ends - self.word_length[words]
        outside = np.r_[0, np.cumsum(~han)]
        inside = outside[word_ends] == outside[word_starts]
        word_starts, word_ends, scores = word_starts[inside], word_ends[inside], self.word_score[words[inside]]
        bare = np.ones(n, dtype=bool)
        bare[word_starts] = False
        bare &= han
        edge_start = np.r_[word_starts, np.flatnonzero(bare)]
        edge_end = np.r_[word_ends, np.flatnonzero(bare) + 1]
        edge_score = np.r_[scores, np.full(int(bare.sum()), self.unknown_score)]
        order = np.lexsort((edge_end, edge_start))
        edge_start, edge_end, edge_score = edge_start[order], edge_end[order], edge_score[order]
        edge_count = np.bincount(edge_start, minlength=n)
        edge_first = np.cumsum(edge_count) - edge_count
        # jieba.Tokenizer.calc, right to left within each block: the best path from each character on;
        # ties go to the longer word. All blocks advance together, by distance from their ends.
        route = np.zeros(n + 1, dtype=np.float64)
        following = np.zeros(n + 1, dtype=np.int64)
        distance = np.zeros(n, dtype=np.int64)
        distance[han_index] = end_of - 1 - han_index
        by_distance = han_index[np.argsort(distance[han_index], kind="stable")]
        cuts = np.searchsorted(distance[by_distance], np.arange(int(distance.max()) + 2))
        for step in range(len(cuts) - 1):
            positions = by_distance[cuts[step]:cuts[step + 1]]
            counts = edge_count[positions]
            offsets = np.cumsum(counts) - counts
            edges = np.repeat(edge_first[positions] - offsets, counts) + np.arange(int(counts.sum()))
            score = edge_score[edges] + route[edge_end[edges]]
            best = np.maximum.reduceat(score, offsets)
            last_best = np.maximum.reduceat(np.where(score == np.repeat(best, counts), np.arange(len(edges)), -1), offsets)
            route[positions] = best
            following[positions] = edge_end[edges[last_best]]
        # The path from each block's start; single English characters in a row make one word.
        current = block_start
        while len(current):
            starts[current] = True
            current = following[current]
            current = current[current < n]
            current = current[han[current]]  # not yet at its block's end
        single_english = starts & english & np.r_[starts[1:], True]
        starts[1:] &= ~(single_english[1:] & single_english[:-1])
        return starts


def read_jieba_dictionary(path: Path) -> tuple[dict[str, int], int]:
    """jieba's dict.txt as jieba.Tokenizer.gen_pfdict reads it: each word's last frequency, and the sum of all lines'."""
    frequencies: dict[str, int] = {}
    total = 0
    for line in path.read_bytes().decode("utf-8").split("\n"):
        line = line.strip(ASCII_SPACE)  # gen_pfdict strips the line's bytes: ASCII whitespace only
        if line:
            word, frequency = line.split(" ")[:2]
            frequencies[word] = int(frequency)
            total += int(frequency)
    return frequencies, total
