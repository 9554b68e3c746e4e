"""Character vocabularies for the encoders we train from scratch (`tiny`, `bilstm`).

The vocabulary is the training text's characters (plus their lower-case and NFKC forms), saved
in the run as a BERT-style fast tokenizer, so the char aligner and every run-loading path treat
these encoders like any Hugging Face one.
"""

from __future__ import annotations

import unicodedata
from collections import Counter
from typing import Any, Iterable

CHAR_SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[SPACE]")


def char_vocabulary(texts: Iterable[str], min_char_count: int = 1, extra: Iterable[str] = ()) -> dict[str, int]:
    """Special tokens, then the texts' characters by frequency (then code point); no whitespace.

    The lower-case (and NFKC) forms of kept characters are included too, so that an upper-case
    character unseen in training falls back to a known lower-case one. `extra` characters (for
    example a pretrained vocabulary's) come last, so that characters never seen in training can
    still have a vector of their own.
    """
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(text)
    kept = {char: n for char, n in counts.items() if n >= min_char_count and not char.isspace()}
    for char in list(kept):
        for form in (char.lower(), unicodedata.normalize("NFKC", char).lower()):
            if len(form) == 1 and not form.isspace() and form not in kept:
                kept[form] = counts.get(form, 0)
    vocab = {token: i for i, token in enumerate(CHAR_SPECIALS)}
    for char in sorted(kept, key=lambda c: (-kept[c], ord(c))):
        if char not in vocab:
            vocab[char] = len(vocab)
    for char in extra:
        if len(char) == 1 and not char.isspace() and char not in vocab:
            vocab[char] = len(vocab)
    return vocab


def char_tokenizer(vocab: dict[str, int], max_positions: int) -> Any:
    """A fast BERT tokenizer over `vocab` (saved with the run; the char aligner reads its vocabulary)."""
    from transformers import BertTokenizerFast

    tokenizer = BertTokenizerFast(vocab=dict(vocab), do_lower_case=False, tokenize_chinese_chars=True)
    tokenizer.model_max_length = max_positions
    return tokenizer
