"""Tokenizers: the byte tokenizer, its Hugging Face copy, local HF directories, bad directories."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from transformers import AutoTokenizer

from raygrow.data import load_tokenizer
from raygrow.data.tokenizer import ByteTokenizer, HFTokenizer
from raygrow.errors import DataError

TEXTS = [
    "hello world",
    "",
    "  leading and trailing spaces  \n\n\ttabs\r\nwindows line",
    "naïve café — “quotes” 日本語 😀 \U0010ffff",
    "\x00\x01\x7f control bytes",
    "def f(x):\n    return x ** 2  # comment\n",
    "replacement \ufffd character",
]


def test_byte_tokenizer_round_trip() -> None:
    tokenizer = load_tokenizer("byte")
    assert (tokenizer.vocab_size, tokenizer.eos_id, tokenizer.bos_id) == (258, 256, 257)
    assert tokenizer.fingerprint == "byte-v1"
    for text, ids in zip(TEXTS, tokenizer.encode_batch(TEXTS)):
        assert ids.dtype == np.int32
        assert ids.max(initial=0) < 256  # no specials added
        assert bytes(ids.astype(np.uint8)).decode("utf-8") == text


def test_byte_tokenizer_saved_for_hugging_face_encodes_the_same(tmp_path: Path) -> None:
    ByteTokenizer().save_pretrained(str(tmp_path))
    hf = AutoTokenizer.from_pretrained(str(tmp_path), local_files_only=True)
    assert len(hf) == 258
    assert (hf.eos_token_id, hf.bos_token_id) == (256, 257)
    expected = ByteTokenizer().encode_batch(TEXTS)
    for text, ids in zip(TEXTS, expected):
        encoded = hf(text, add_special_tokens=False)["input_ids"]
        assert encoded == ids.tolist(), text
        assert hf.decode(encoded) == text
    # raygrow's loader reads the saved directory back as the same tokenizer
    loaded = load_tokenizer(str(tmp_path))
    assert loaded.vocab_size == 258 and loaded.eos_id == 256
    assert all(np.array_equal(a, b) for a, b in zip(loaded.encode_batch(TEXTS), expected))


def test_hugging_face_directory_loads_and_encodes(tmp_path: Path, make_bpe_dir) -> None:
    directory = make_bpe_dir(tmp_path / "bpe")
    tokenizer = load_tokenizer(str(directory))
    hf = AutoTokenizer.from_pretrained(str(directory), local_files_only=True)
    assert isinstance(tokenizer, HFTokenizer)
    assert tokenizer.vocab_size == len(hf)
    assert tokenizer.eos_id == hf.convert_tokens_to_ids("<eos>")
    assert tokenizer.bos_id == hf.convert_tokens_to_ids("<bos>")
    texts = ["the cat sat", "a dog ate the mat food"]
    for text, ids in zip(texts, tokenizer.encode_batch(texts)):
        assert ids.dtype == np.int32
        assert ids.tolist() == hf(text, add_special_tokens=False)["input_ids"]
    assert tokenizer.fingerprint.startswith("hf-")
    assert tokenizer.fingerprint != load_tokenizer("byte").fingerprint
    # the fingerprint depends on the vocabulary, not on where the files are
    copy = make_bpe_dir(tmp_path / "copy")
    assert load_tokenizer(str(copy)).fingerprint == tokenizer.fingerprint
    # save_pretrained writes a directory that loads again
    tokenizer.save_pretrained(str(tmp_path / "saved"))
    assert load_tokenizer(str(tmp_path / "saved")).fingerprint == tokenizer.fingerprint


def one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message and message
    return message


def test_missing_tokenizer_directory(tmp_path: Path) -> None:
    with pytest.raises(DataError) as error:
        load_tokenizer(str(tmp_path / "nope"))
    assert "nope" in one_line(error) and "does not exist" in str(error.value)


def test_tokenizer_path_that_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "vocab.txt").write_text("a b c")
    with pytest.raises(DataError) as error:
        load_tokenizer(str(tmp_path / "vocab.txt"))
    assert "is not a directory" in one_line(error)


@pytest.mark.parametrize("files",
                         [{}, {"tokenizer.json": "{not json", "tokenizer_config.json": "{}"}],
                         ids=["empty", "garbage"])
def test_invalid_tokenizer_directory(tmp_path: Path, files: dict[str, str]) -> None:
    for name, content in files.items():
        (tmp_path / name).write_text(content)
    with pytest.raises(DataError) as error:
        load_tokenizer(str(tmp_path))
    assert str(tmp_path) in one_line(error) and "save_pretrained" in str(error.value)


def test_unknown_hub_name_is_refused_without_network() -> None:
    with pytest.raises(DataError) as error:
        load_tokenizer("no-such-org/no-such-tokenizer")
    assert "no-such-org/no-such-tokenizer" in one_line(error)


def test_tokenizer_without_eos_is_refused(tmp_path: Path, make_bpe_dir) -> None:
    directory = make_bpe_dir(tmp_path / "no-eos", eos=None)
    with pytest.raises(DataError) as error:
        load_tokenizer(str(directory))
    assert "EOS" in one_line(error) and str(directory) in str(error.value)
