"""manifest.json: what a packed dataset directory holds. Written last, so its presence means complete."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

from raygrow import storage
from raygrow.errors import DataError

MANIFEST = "manifest.json"
FORMAT_VERSION = 1  # bump when the shard layout or packing rule changes


@dataclass
class Manifest:
    seq_len: int  # rows hold seq_len + 1 token ids (inputs and shifted labels)
    tokenizer: str  # the data.tokenizer spec
    tokenizer_fingerprint: str
    vocab_size: int
    eos_id: int
    train_shards: list[str]  # file names inside the dataset directory, in row order
    train_shard_rows: list[int]
    val_shards: list[str]
    val_shard_rows: list[int]
    train_rows: int
    val_rows: int
    train_tokens: int  # train_rows * (seq_len + 1)
    documents: int  # non-blank documents packed (train and validation)
    replaced_documents: int  # documents whose undecodable bytes were replaced
    source: str  # the data.source spec
    format_version: int = FORMAT_VERSION

    def save(self, directory: str) -> None:
        text = json.dumps(dataclasses.asdict(self), indent=1)
        storage.write_bytes(f"{directory}/{MANIFEST}", text.encode())

    @classmethod
    def load(cls, directory: str) -> Manifest:
        """The manifest of a complete dataset directory; DataError if missing or incomplete."""
        path = f"{directory}/{MANIFEST}"
        redo = "delete the directory and prepare the data again"
        if not storage.exists(path):
            raise DataError(f"{directory} is not a prepared dataset (no {MANIFEST}); prepare the data first")
        try:
            manifest = cls(**json.loads(storage.read_bytes(path)))
        except (ValueError, TypeError) as error:  # bad JSON, or missing / unknown keys
            raise DataError(f"{path} is damaged ({error}); {redo}") from None
        if manifest.format_version != FORMAT_VERSION:
            raise DataError(f"{path} has format {manifest.format_version}, this raygrow reads "
                            f"{FORMAT_VERSION}; {redo}")
        for name in manifest.train_shards + manifest.val_shards:
            storage.contained(name, path)
            if not storage.exists(f"{directory}/{name}"):
                raise DataError(f"{directory}/{name} is missing; {redo}")
        return manifest

    def shards(self, split: str) -> tuple[list[str], list[int]]:
        """(shard file names, rows per shard) of "train" or "val"."""
        if split == "train":
            return self.train_shards, self.train_shard_rows
        if split == "val":
            return self.val_shards, self.val_shard_rows
        raise ValueError(f"split must be 'train' or 'val', got {split!r}")
