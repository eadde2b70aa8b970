"""manifest.json: what a packed dataset directory holds. Written last, so its presence means
complete."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field

from raygrow import storage
from raygrow.errors import DataError

MANIFEST = "manifest.json"
FORMAT_VERSION = 1  # bump when the shard layout or packing rule changes
# What a mixture does when a source runs out: it ends there, at the sources' weights (no row is
# repeated; the other sources' remaining rows are left out). The only rule so far.
EXHAUSTED_STOP = "stop"


@dataclass
class SourceShare:
    """One source of a dataset: what it gave and its share of the train rows."""

    source: str  # the source spec
    text_field: str
    weight: float  # as configured
    target: float  # weight / sum of the weights: the intended share of the rows
    realised: float  # train_rows / all train rows: the share the shards hold
    documents: int  # non-blank documents packed (train and validation)
    train_rows: int  # rows of this source in the train shards
    train_tokens: int  # train_rows * (seq_len + 1)
    val_rows: int
    packed_train_rows: int  # rows the source gave; more than train_rows when the mixture ended
    #                         before this source ran out



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
    source: str  # the data.source spec (a mixture: its sources joined with " + ")
    format_version: int = FORMAT_VERSION
    sources: list[SourceShare] = field(default_factory=list)  # per source (empty: written before
    #                                                            mixtures existed)
    exhausted: str = EXHAUSTED_STOP  # what the mixture did when a source ran out

    def __post_init__(self) -> None:
        self.sources = [item if isinstance(item, SourceShare) else SourceShare(**item)
                        for item in self.sources]

    def save(self, directory: str) -> None:
        text = json.dumps(dataclasses.asdict(self), indent=1)
        storage.write_bytes(f"{directory}/{MANIFEST}", text.encode())

    @classmethod
    def load(cls, directory: str) -> Manifest:
        """The manifest of a complete dataset directory; DataError if missing or incomplete."""
        path = f"{directory}/{MANIFEST}"
        redo = "delete the directory and prepare the data again"
        if not storage.exists(path):
            raise DataError(f"{directory} is not a prepared dataset (no {MANIFEST}); prepare the "
                            "data first")
        try:
            manifest = cls(**json.loads(storage.read_bytes(path)))
        except (ValueError, TypeError) as error:  # bad JSON, or missing / unknown keys
            raise DataError(f"{path} is damaged ({error}); {redo}") from None
        if manifest.format_version != FORMAT_VERSION:
            raise DataError(f"{path} has format {manifest.format_version}, this raygrow reads "
                            f"{FORMAT_VERSION}; {redo}")
        listed = storage.list_files(directory, recursive=False)
        present = {storage.base_name(entry.path) for entry in listed}
        for name in manifest.train_shards + manifest.val_shards:  # one listing, not a lookup each
            storage.contained(name, path)
            if name not in present:
                raise DataError(f"{directory}/{name} is missing; {redo}")
        return manifest

    def shards(self, split: str) -> tuple[list[str], list[int]]:
        """(shard file names, rows per shard) of "train" or "val"."""
        if split == "train":
            return self.train_shards, self.train_shard_rows
        if split == "val":
            return self.val_shards, self.val_shard_rows
        raise ValueError(f"split must be 'train' or 'val', got {split!r}")
