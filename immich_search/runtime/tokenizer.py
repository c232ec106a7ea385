"""Chinese-CLIP's text tokenizer: BERT WordPiece over cn-clip's 21,128-entry vocabulary.

It reproduces, token for token, ``cn_clip.clip.tokenize`` (``cn_clip/clip/utils.py``) and the BERT
tokenizer it calls (``cn_clip/clip/bert_tokenizer.py``, Google's BERT ``tokenization.py``), without
importing cn-clip (which pulls in torch):

1. Basic tokenizer: drop NUL, U+FFFD and control characters (categories Cc, Cf; tab, newline and
   carriage return count as whitespace), turn whitespace (space, ``\\t``, ``\\n``, ``\\r``, category
   Zs) into spaces, put spaces around every CJK ideograph, split on whitespace, lower-case each word
   and strip accents (NFD, drop category Mn), split off punctuation (ASCII non-alphanumerics and
   Unicode categories P*).
2. WordPiece: greedy longest match first against the vocabulary, continuation pieces prefixed
   ``##``; a word longer than 200 characters, or one that cannot be covered, becomes ``[UNK]``.
3. Ids: ``[CLS]`` + the first 50 ids + ``[SEP]``, zero-padded (``[PAD]``) to the context length 52.

The vocabulary is cn-clip's ``cn_clip/clip/vocab.txt`` (the RoBERTa-wwm-ext Chinese vocabulary; one
token per line, id = line number from 0): ``[PAD]`` 0, ``[UNK]`` 100, ``[CLS]`` 101, ``[SEP]`` 102;
飞机 -> ``101 7607 3322 102 0 ...``.
"""

from __future__ import annotations

import importlib.util
import os
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from immich_search.runtime.session import ModelError

CONTEXT_LENGTH = 52
"""Padded token count of every cn-clip text model, ``[CLS]`` and ``[SEP]`` included (cn-clip's
``tokenize(context_length=52)`` and its ONNX exporter's ``--context-length`` default)."""

VOCAB_SIZE = 21128
"""Entries in cn-clip's ``vocab.txt`` (``vocab_size`` of ``RoBERTa-wwm-ext-*-chinese.json``, ``RBT3``)."""

PAD_TOKEN, UNK_TOKEN, CLS_TOKEN, SEP_TOKEN = "[PAD]", "[UNK]", "[CLS]", "[SEP]"
SPECIAL_TOKENS = (PAD_TOKEN, UNK_TOKEN, CLS_TOKEN, SEP_TOKEN)
CN_CLIP_SPECIAL_IDS = {PAD_TOKEN: 0, UNK_TOKEN: 100, CLS_TOKEN: 101, SEP_TOKEN: 102}
"""The special tokens' ids in cn-clip's vocab.txt (its lines 1, 101, 102 and 103)."""

MAX_CHARS_PER_WORD = 200
"""Longer words become ``[UNK]`` (``WordpieceTokenizer.max_input_chars_per_word`` in BERT)."""

VOCAB_FILE_NAME = "vocab.txt"


def _is_whitespace(char: str) -> bool:
    """BERT's whitespace: space, tab, newline, carriage return, or Unicode category Zs."""
    return char in " \t\n\r" or unicodedata.category(char) == "Zs"


def _is_control(char: str) -> bool:
    """BERT's control characters: categories Cc and Cf, except tab, newline and carriage return."""
    if char in "\t\n\r":
        return False
    return unicodedata.category(char) in ("Cc", "Cf")


def _is_punctuation(char: str) -> bool:
    """BERT's punctuation: every ASCII non-letter, non-digit printable, and Unicode categories P*."""
    code = ord(char)
    if 33 <= code <= 47 or 58 <= code <= 64 or 91 <= code <= 96 or 123 <= code <= 126:
        return True
    return unicodedata.category(char).startswith("P")


# The code point ranges BERT treats as CJK ideographs (bert_tokenizer.py ``_is_chinese_char``): CJK
# Unified Ideographs, Extension A, Extensions B-E (as BERT lists them), the compatibility blocks.
_CJK_RANGES = (
    (0x4E00, 0x9FFF),
    (0x3400, 0x4DBF),
    (0x20000, 0x2A6DF),
    (0x2A700, 0x2B73F),
    (0x2B740, 0x2B81F),
    (0x2B820, 0x2CEAF),
    (0xF900, 0xFAFF),
    (0x2F800, 0x2FA1F),
)


def _is_cjk(char: str) -> bool:
    """Return whether ``char`` is a CJK ideograph in BERT's sense (split into its own token)."""
    code = ord(char)
    return any(low <= code <= high for low, high in _CJK_RANGES)


def _strip_accents(word: str) -> str:
    """Decompose (NFD) and drop non-spacing marks (category Mn)."""
    return "".join(char for char in unicodedata.normalize("NFD", word) if unicodedata.category(char) != "Mn")


def _split_punctuation(word: str) -> list[str]:
    """Split ``word`` so that every punctuation character is a piece of its own."""
    pieces: list[str] = []
    current: list[str] = []
    for char in word:
        if _is_punctuation(char):
            if current:
                pieces.append("".join(current))
                current = []
            pieces.append(char)
        else:
            current.append(char)
    if current:
        pieces.append("".join(current))
    return pieces


def basic_tokenize(text: str) -> list[str]:
    """Split ``text`` into BERT's basic tokens (lower-cased, accent-stripped; see the module docstring).

    Args:
        text: any string; bytes are decoded as UTF-8, dropping invalid sequences (as BERT does).

    Returns:
        The words, CJK ideographs and punctuation marks, in order.
    """
    if isinstance(text, bytes):
        text = text.decode("utf-8", "ignore")
    cleaned = []
    for char in text:
        if char in ("\x00", "\ufffd") or _is_control(char):
            continue
        if _is_whitespace(char):
            cleaned.append(" ")
        elif _is_cjk(char):
            cleaned.extend((" ", char, " "))
        else:
            cleaned.append(char)
    tokens: list[str] = []
    for word in "".join(cleaned).split():
        tokens.extend(_split_punctuation(_strip_accents(word.lower())))
    # Lower-casing and NFD can create new whitespace-separated pieces; BERT splits once more.
    return " ".join(tokens).split()


def load_vocab(path: str | os.PathLike[str]) -> dict[str, int]:
    """Read a BERT ``vocab.txt``: one token per line, id = line number from 0.

    Each line is stripped of surrounding whitespace, as BERT's ``load_vocab`` does; when two lines strip
    to the same token the later id wins (cn-clip's file has ``\\u2028`` at id 343, which becomes ``""``).

    Raises:
        ModelError: the file is missing, not UTF-8, or lacks ``[PAD]``, ``[UNK]``, ``[CLS]`` or ``[SEP]``.
    """
    path = Path(path)
    vocab: dict[str, int] = {}
    try:
        with path.open(encoding="utf-8") as handle:  # universal newlines, as BERT's readline loop
            for index, line in enumerate(handle):
                vocab[line.strip()] = index
    except FileNotFoundError:
        raise ModelError(f"vocabulary file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ModelError(f"cannot read vocabulary file {path}: {error}") from error
    missing = [token for token in SPECIAL_TOKENS if token not in vocab]
    if missing:
        raise ModelError(f"vocabulary file {path} lacks {', '.join(missing)}; is it a BERT vocab.txt?")
    return vocab


def cn_clip_vocab_path() -> Path | None:
    """Return ``vocab.txt`` of an installed ``cn_clip`` package (``cn_clip/clip/vocab.txt``), else ``None``.

    The package is located with ``importlib.util.find_spec``, without importing it (cn-clip imports torch).
    """
    try:
        spec = importlib.util.find_spec("cn_clip")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "clip" / VOCAB_FILE_NAME
        if candidate.is_file():
            return candidate
    return None


def find_vocab_file(*directories: str | os.PathLike[str] | None, explicit: str | None = None) -> Path:
    """Locate cn-clip's ``vocab.txt``.

    Order: ``explicit`` when given; the installed cn_clip package's ``cn_clip/clip/vocab.txt``; then
    ``<directory>/vocab.txt`` for each of ``directories`` in order (the model's folder, the model root).

    Raises:
        ModelError: ``explicit`` does not exist, or no candidate exists (the message lists them).
    """
    if explicit is not None:
        path = Path(explicit)
        if not path.is_file():
            raise ModelError(f"vocabulary file not found: {path}")
        return path
    packaged = cn_clip_vocab_path()
    if packaged is not None:
        return packaged
    tried = []
    for directory in directories:
        if directory is None:
            continue
        candidate = Path(directory) / VOCAB_FILE_NAME
        if candidate.is_file():
            return candidate
        tried.append(str(candidate))
    where = ", ".join(tried) if tried else "no model directory given"
    raise ModelError(
        f"cn-clip's vocab.txt not found (tried the cn_clip package, {where}); copy cn_clip/clip/vocab.txt "
        "from https://github.com/OFA-Sys/Chinese-CLIP into the model directory"
    )


class ClipTokenizer:
    """cn-clip's tokenizer: text -> WordPiece tokens -> ``[CLS] ids [SEP]`` padded to ``context_length``.

    Args:
        vocab: token -> id, as returned by :func:`load_vocab`; must contain the four special tokens.
        context_length: padded length, ``[CLS]`` and ``[SEP]`` included (cn-clip: 52).

    Raises:
        ModelError: the vocabulary lacks a special token.
        ValueError: ``context_length`` is below 2.
    """

    def __init__(self, vocab: Mapping[str, int], context_length: int = CONTEXT_LENGTH) -> None:
        missing = [token for token in SPECIAL_TOKENS if token not in vocab]
        if missing:
            raise ModelError(f"vocabulary lacks {', '.join(missing)}")
        if context_length < 2:
            raise ValueError(f"context_length must be at least 2, got {context_length}")
        self.vocab = dict(vocab)
        self.context_length = context_length
        self.pad_id = self.vocab[PAD_TOKEN]
        self.unk_id = self.vocab[UNK_TOKEN]
        self.cls_id = self.vocab[CLS_TOKEN]
        self.sep_id = self.vocab[SEP_TOKEN]

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], context_length: int = CONTEXT_LENGTH) -> ClipTokenizer:
        """Build a tokenizer from a ``vocab.txt``; raises :class:`ModelError` as :func:`load_vocab`."""
        return cls(load_vocab(path), context_length)

    def __len__(self) -> int:
        """Return the vocabulary size (21,128 for cn-clip's vocabulary)."""
        return len(self.vocab)

    def _wordpiece(self, word: str) -> list[str]:
        """Split one basic token into vocabulary pieces, greedy longest match first, or ``[UNK]``."""
        if len(word) > MAX_CHARS_PER_WORD:
            return [UNK_TOKEN]
        pieces: list[str] = []
        start = 0
        while start < len(word):
            end = len(word)
            piece = None
            while start < end:
                candidate = word[start:end] if start == 0 else "##" + word[start:end]
                if candidate in self.vocab:
                    piece = candidate
                    break
                end -= 1
            if piece is None:
                return [UNK_TOKEN]
            pieces.append(piece)
            start = end
        return pieces

    def tokenize(self, text: str) -> list[str]:
        """Return the WordPiece tokens of ``text`` (no ``[CLS]``/``[SEP]``): ``飞机`` -> ``飞``, ``机``."""
        tokens: list[str] = []
        for word in basic_tokenize(text):
            tokens.extend(self._wordpiece(word))
        return tokens

    def encode(self, text: str) -> list[int]:
        """Return ``[CLS] ids [SEP]`` for ``text``, truncated to ``context_length`` ids, unpadded."""
        ids = [self.vocab[token] for token in self.tokenize(text)]
        return [self.cls_id, *ids[: self.context_length - 2], self.sep_id]

    def __call__(self, texts: str | Iterable[str]) -> np.ndarray:
        """Tokenize one string or a sequence of strings.

        Returns:
            int64 array of shape ``[n, context_length]`` (``n`` = 1 for a single string): each row
            ``[CLS] ids [SEP]`` followed by ``[PAD]`` (0) up to the context length.
        """
        batch: Sequence[str] = [texts] if isinstance(texts, (str, bytes)) else list(texts)
        result = np.full((len(batch), self.context_length), self.pad_id, dtype=np.int64)
        for row, text in enumerate(batch):
            ids = self.encode(text)
            result[row, : len(ids)] = ids
        return result
