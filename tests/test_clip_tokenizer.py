"""cn-clip tokenizer: WordPiece over a vocabulary whose ids match cn-clip's vocab.txt."""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from immich_search.runtime.manifest import load_manifest
from immich_search.runtime.session import ModelError
from immich_search.runtime.tokenizer import (
    CONTEXT_LENGTH,
    ClipTokenizer,
    basic_tokenize,
    cn_clip_vocab_path,
    find_vocab_file,
    load_vocab,
)
from tests.clip_fixtures import CN_CLIP_IDS, VOCAB_SIZE, write_vocab


@pytest.fixture(scope="module")
def vocab_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_vocab(tmp_path_factory.mktemp("vocab") / "vocab.txt")


@pytest.fixture(scope="module")
def tokenizer(vocab_file: Path) -> ClipTokenizer:
    return ClipTokenizer.from_file(vocab_file)


def ids(*tokens: str) -> list[int]:
    return [CN_CLIP_IDS[token] for token in tokens]


def test_feiji_gives_cn_clip_ids(tokenizer: ClipTokenizer) -> None:
    result = tokenizer("飞机")
    assert result.dtype == np.int64
    assert result.shape == (1, CONTEXT_LENGTH)
    assert result[0].tolist() == [101, 7607, 3322, 102] + [0] * 48


def test_mixed_text_tokens_and_ids(tokenizer: ClipTokenizer) -> None:
    text = "Hello World 2024年 iPhone截图"
    expected = ["hello", "world", "202", "##4", "年", "iphone", "截", "图"]
    assert tokenizer.tokenize(text) == expected
    row = tokenizer(text)[0].tolist()
    assert row[:10] == [101, *ids(*expected), 102]
    assert row[10:] == [0] * 42


def test_punctuation_cjk_and_case(tokenizer: ClipTokenizer) -> None:
    assert basic_tokenize("发票,123-456！") == ["发", "票", ",", "123", "-", "456", "！"]
    assert tokenizer.tokenize("HELLO，world!") == ["hello", "，", "world", "!"]
    assert tokenizer.tokenize("Café") == ["cafe"]  # lower case, accents stripped


def test_whitespace_and_control_characters(tokenizer: ClipTokenizer) -> None:
    # Tab/newline/ideographic space separate words; zero-width and NUL characters vanish.
    assert tokenizer.tokenize("hello\tworld\n飞\u3000机") == ["hello", "world", "飞", "机"]
    assert tokenizer.tokenize("hel\u200blo\x00 wor\ufffdld") == ["hello", "world"]


def test_unknown_words_become_unk(tokenizer: ClipTokenizer) -> None:
    assert tokenizer.tokenize("invoice 猫") == ["[UNK]", "猫"]
    assert tokenizer.tokenize("🙂") == ["[UNK]"]
    # Longer than 200 characters: [UNK] even though every piece would be known.
    assert tokenizer.tokenize("i" * 201) == ["[UNK]"]
    assert tokenizer("invoice")[0][:3].tolist() == [101, 100, 102]


def test_truncation_keeps_sep(tokenizer: ClipTokenizer) -> None:
    row = tokenizer("飞" * 80)[0].tolist()
    assert row == [101] + [7607] * 50 + [102]


def test_batches_and_empty_inputs(tokenizer: ClipTokenizer) -> None:
    batch = tokenizer(["飞机", "", "hello"])
    assert batch.shape == (3, CONTEXT_LENGTH)
    assert batch[1].tolist() == [101, 102] + [0] * 50
    assert tokenizer([]).shape == (0, CONTEXT_LENGTH)
    assert tokenizer(b"\xe9\xa3\x9e")[0][:3].tolist() == [101, 7607, 102]  # bytes: UTF-8


def test_custom_context_length(vocab_file: Path) -> None:
    short = ClipTokenizer.from_file(vocab_file, context_length=4)
    assert short("飞机猫").tolist() == [[101, 7607, 3322, 102]]
    with pytest.raises(ValueError):
        ClipTokenizer.from_file(vocab_file, context_length=1)


def test_load_vocab_reads_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "vocab.txt"
    # Like cn-clip's file, which has U+2028 on line 344: lines strip to tokens, ids are line numbers.
    path.write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\n\u2028\n##\u2028\nab  \n", encoding="utf-8")
    vocab = load_vocab(path)
    assert vocab == {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, "": 4, "##": 5, "ab": 6}
    assert ClipTokenizer(vocab)("ab").tolist()[0][:3] == [2, 6, 3]


def test_load_vocab_errors(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="not found"):
        load_vocab(tmp_path / "missing.txt")
    no_cls = tmp_path / "no_cls.txt"
    no_cls.write_text("[PAD]\n[UNK]\n[SEP]\n", encoding="utf-8")
    with pytest.raises(ModelError, match=r"\[CLS\]"):
        load_vocab(no_cls)
    binary = tmp_path / "binary.txt"
    binary.write_bytes(b"[PAD]\n\xff\xfe\n")
    with pytest.raises(ModelError, match="cannot read"):
        load_vocab(binary)
    with pytest.raises(ModelError, match="lacks"):
        ClipTokenizer({"[PAD]": 0})


def test_find_vocab_file_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("immich_search.runtime.tokenizer.cn_clip_vocab_path", lambda: None)
    folder, root = tmp_path / "ViT-B-16", tmp_path
    folder.mkdir()
    with pytest.raises(ModelError, match="vocab.txt not found") as error:
        find_vocab_file(folder, root)
    assert str(root / "vocab.txt") in str(error.value)
    write_vocab(root / "vocab.txt")
    assert find_vocab_file(folder, root) == root / "vocab.txt"
    write_vocab(folder / "vocab.txt")
    assert find_vocab_file(folder, root) == folder / "vocab.txt"
    assert find_vocab_file(folder, explicit=str(root / "vocab.txt")) == root / "vocab.txt"
    with pytest.raises(ModelError, match="not found"):
        find_vocab_file(folder, explicit=str(tmp_path / "nope.txt"))


def test_installed_cn_clip_vocab_is_preferred(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A stand-in cn_clip package (only its folder layout matters: it is located, never imported).
    package = tmp_path / "site" / "cn_clip"
    (package / "clip").mkdir(parents=True)
    (package / "__init__.py").write_text("raise ImportError('must not be imported')\n")
    write_vocab(package / "clip" / "vocab.txt")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    importlib.invalidate_caches()
    assert cn_clip_vocab_path() == package / "clip" / "vocab.txt"
    write_vocab(tmp_path / "vocab.txt")
    assert find_vocab_file(tmp_path) == package / "clip" / "vocab.txt"


@settings(max_examples=400, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text())
def test_any_text_tokenizes(tokenizer: ClipTokenizer, text: str) -> None:
    result = tokenizer(text)
    assert result.shape == (1, CONTEXT_LENGTH)
    assert result.dtype == np.int64
    row = result[0].tolist()
    assert row[0] == 101
    sep = row.index(102)
    assert 1 <= sep < CONTEXT_LENGTH
    assert all(value == 0 for value in row[sep + 1 :])
    assert all(value in tokenizer.vocab.values() for value in row)


WHOLE_WORDS = sorted(token for token in CN_CLIP_IDS if not token.startswith(("[", "##")))


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(words=st.lists(st.sampled_from(WHOLE_WORDS), max_size=70))
def test_known_words_map_to_their_ids(tokenizer: ClipTokenizer, words: list[str]) -> None:
    text = " ".join(words)
    assert tokenizer.tokenize(text) == words
    row = tokenizer(text)[0].tolist()
    kept = [CN_CLIP_IDS[word] for word in words][: CONTEXT_LENGTH - 2]
    assert row == [101, *kept, 102] + [0] * (CONTEXT_LENGTH - 2 - len(kept))


def _reference_tokenizer():
    """cn-clip's own BertTokenizer over its real vocab.txt, when cn_clip is installed (not imported:
    its package imports torch; the tokenizer module itself needs only six)."""
    vocab = cn_clip_vocab_path()
    if vocab is None:
        pytest.skip("cn_clip is not installed")
    pytest.importorskip("six")
    spec = importlib.util.spec_from_file_location("cn_clip_bert_tokenizer", vocab.parent / "bert_tokenizer.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.FullTokenizer(vocab_file=str(vocab)), vocab


def test_real_vocab_matches_manifest() -> None:
    reference, vocab = _reference_tokenizer()
    real = ClipTokenizer.from_file(vocab)
    assert len(real) == VOCAB_SIZE == load_manifest().vocab.size
    assert real("飞机")[0][:4].tolist() == [101, 7607, 3322, 102]
    for token, index in CN_CLIP_IDS.items():
        assert real.vocab[token] == index, token


@settings(max_examples=2000, deadline=None)
@given(text=st.text(alphabet=st.one_of(st.characters(), st.sampled_from(list("飞机猫 ,.!é\u0301\u3000İß#")))))
def test_same_ids_as_cn_clip(text: str) -> None:
    reference, vocab = _reference_tokenizer()
    ours = _real_tokenizer(vocab)
    expected = [reference.vocab["[CLS]"], *reference.convert_tokens_to_ids(reference.tokenize(text))[:50]]
    expected.append(reference.vocab["[SEP]"])
    assert ours(text)[0].tolist() == expected + [0] * (CONTEXT_LENGTH - len(expected))


_REAL: dict[Path, ClipTokenizer] = {}


def _real_tokenizer(vocab: Path) -> ClipTokenizer:
    if vocab not in _REAL:
        _REAL[vocab] = ClipTokenizer.from_file(vocab)
    return _REAL[vocab]


def test_vocab_file_line_count_matches_cn_clip(tmp_path: Path) -> None:
    path = write_vocab(tmp_path / "vocab.txt", size=VOCAB_SIZE)
    assert len(load_vocab(path)) == VOCAB_SIZE
