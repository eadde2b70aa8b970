"""Tokenizers: the built-in byte tokenizer and local Hugging Face tokenizer directories.

The byte tokenizer needs no files: ids 0..255 are the UTF-8 bytes of the text, then EOS (256)
and BOS (257). Its `save_pretrained` writes a real `tokenizers` byte-level model so that an
exported model ships a tokenizer stock `transformers.AutoTokenizer` loads and that encodes text
to the same ids.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
from typing import Protocol

import numpy as np

from raygrow.errors import DataError

logger = logging.getLogger("raygrow.data")

BYTE = "byte"
EOS_TOKEN = "<|endoftext|>"
BOS_TOKEN = "<|begin_of_text|>"


class Tokenizer(Protocol):
    vocab_size: int  # ids are 0 .. vocab_size-1, special tokens included
    eos_id: int  # written between documents when packing
    bos_id: int | None
    fingerprint: str  # changes whenever the text → ids mapping changes; part of the dataset key

    def encode_batch(self, texts: list[str]) -> list[np.ndarray]:
        """int32 ids of each text; no special tokens added."""
        ...

    def save_pretrained(self, directory: str) -> None:
        """Write files that `transformers.AutoTokenizer.from_pretrained(directory)` loads."""
        ...


class ByteTokenizer:
    """UTF-8 bytes as ids, plus EOS and BOS: a vocabulary of 258 that needs no files."""

    vocab_size = 258
    eos_id = 256
    bos_id = 257
    fingerprint = "byte-v1"

    def encode_batch(self, texts: list[str]) -> list[np.ndarray]:
        # "replace" only matters for lone surrogates, which have no UTF-8 form (the Hugging Face
        # copy cannot hold them either); readers already replace them before tokenizing.
        return [np.frombuffer(text.encode("utf-8", "replace"), dtype=np.uint8).astype(np.int32)
                for text in texts]

    def save_pretrained(self, directory: str) -> None:
        _byte_level_hf_tokenizer().save_pretrained(directory)


def _byte_characters() -> list[str]:
    """The printable character ByteLevel pre-tokenization uses for each byte 0..255 (GPT-2's
    map)."""
    visible = {*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
               *range(ord("®"), ord("ÿ") + 1)}
    characters, shifted = [], 0
    for byte in range(256):
        if byte in visible:
            characters.append(chr(byte))
        else:  # control and blank bytes move past 255 so every byte has a visible stand-in
            characters.append(chr(256 + shifted))
            shifted += 1
    return characters


def _byte_level_hf_tokenizer():
    """The byte tokenizer as a transformers fast tokenizer: BPE over the 256 byte characters,
    no merges.

    Caveat: the Hugging Face copy turns the literal text "<|endoftext|>" into the EOS id, while
    `ByteTokenizer.encode_batch` keeps such text as bytes (a corpus must not inject EOS).
    """
    from tokenizers import AddedToken
    from tokenizers import Tokenizer as RawTokenizer
    from tokenizers import decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {character: byte for byte, character in enumerate(_byte_characters())}
    raw = RawTokenizer(models.BPE(vocab=vocab, merges=[]))
    # No regex split: with no merges, words do not change the ids, and one split is faster.
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    raw.decoder = decoders.ByteLevel()
    raw.add_special_tokens([AddedToken(EOS_TOKEN, special=True, normalized=False),
                            AddedToken(BOS_TOKEN, special=True, normalized=False)])
    return PreTrainedTokenizerFast(tokenizer_object=raw, eos_token=EOS_TOKEN, bos_token=BOS_TOKEN,
                                   model_max_length=1_000_000_000)


class HFTokenizer:
    """A Hugging Face tokenizer loaded from a local directory (or the local Hugging Face cache)."""

    def __init__(self, spec: str, hf_tokenizer) -> None:
        self.spec = spec
        self._hf = hf_tokenizer
        if hf_tokenizer.eos_token_id is None:
            raise DataError(f"data.tokenizer: {spec} has no EOS token; set eos_token in its "
                            "tokenizer_config.json (packing puts EOS between documents)")
        self.vocab_size = len(hf_tokenizer)
        self.eos_id = int(hf_tokenizer.eos_token_id)
        self.bos_id = None if hf_tokenizer.bos_token_id is None else int(hf_tokenizer.bos_token_id)
        self.fingerprint = "hf-" + hashlib.sha256(self._description().encode()).hexdigest()[:32]

    def _description(self) -> str:
        """Everything that decides the ids: the full fast-tokenizer JSON, or the vocabulary."""
        backend = getattr(self._hf, "backend_tokenizer", None)
        if backend is not None:
            return backend.to_str()
        return repr(sorted(self._hf.get_vocab().items()))

    def encode_batch(self, texts: list[str]) -> list[np.ndarray]:
        backend = getattr(self._hf, "backend_tokenizer", None)
        # straight to Rust: no max-length warnings, no Python lists of dicts
        if backend is not None:
            encodings = backend.encode_batch(texts, add_special_tokens=False)
            return [np.asarray(encoding.ids, dtype=np.int32) for encoding in encodings]
        ids = self._hf(texts, add_special_tokens=False, verbose=False)["input_ids"]
        return [np.asarray(row, dtype=np.int32) for row in ids]

    def save_pretrained(self, directory: str) -> None:
        self._hf.save_pretrained(directory)


def load_tokenizer(spec: str) -> Tokenizer:
    """"byte", a local tokenizer directory, or a model name already in the local Hugging Face cache.

    Raises DataError with one line naming the tokenizer and what to do.
    """
    if spec == BYTE:
        return ByteTokenizer()
    return _load_hf(normalize_spec(spec))


def normalize_spec(spec: str) -> str:
    """An absolute path for a local directory (workers run elsewhere), anything else unchanged."""
    if spec == BYTE:
        return spec
    expanded = os.path.expanduser(spec)
    return os.path.abspath(expanded) if os.path.exists(expanded) else spec


@functools.lru_cache(maxsize=4)
def _load_hf(spec: str) -> HFTokenizer:
    from transformers import AutoTokenizer

    is_dir = os.path.isdir(spec)
    if not is_dir and (os.path.exists(spec) or spec.startswith((".", "/", "~"))):
        what = "is not a directory" if os.path.exists(spec) else "does not exist"
        raise DataError(f"data.tokenizer: {spec} {what}; give 'byte' or a directory written by "
                        "a tokenizer's save_pretrained")
    try:
        hf_tokenizer = AutoTokenizer.from_pretrained(spec, local_files_only=True)
    except Exception as error:  # transformers raises many types (OSError, ValueError, JSON errors)
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        if is_dir:
            raise DataError(f"data.tokenizer: cannot load a tokenizer from {spec} ({reason}); the "
                            "directory needs tokenizer.json/tokenizer_config.json from "
                            "save_pretrained"
                            ) from None
        raise DataError(f"data.tokenizer: {spec!r} is neither 'byte', a local directory, nor a "
                        "model in the local Hugging Face cache; download it and give its "
                        "directory") from None
    if not getattr(hf_tokenizer, "is_fast", False):
        logger.warning("tokenizer %s is a slow (Python) tokenizer; tokenizing will be slow", spec)
    return HFTokenizer(spec, hf_tokenizer)
