"""Fixtures for the data tests: a small mixed corpus, run configs, a tiny BPE tokenizer.

The `ray` marker (pyproject.toml) and the session `ray_local` cluster come from tests/conftest.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from raygrow.config import DataConfig, RunConfig, Shape, TrainConfig


def words(index: int, count: int) -> str:
    """Distinct, recognisable text for document `index`."""
    return " ".join(f"w{index}x{position}" for position in range(count))


@pytest.fixture
def corpus(tmp_path: Path) -> tuple[Path, list[str]]:
    """A directory with .txt, .jsonl and .parquet documents and their texts in sorted-path order.

    The jsonl file also holds a blank line (not a record) and a null text (a blank record).
    """
    root = tmp_path / "corpus"
    (root / "00-notes").mkdir(parents=True)
    texts = []
    for index in range(10):
        text = f"note {index}: " + words(index, 20 + index)
        (root / "00-notes" / f"{index:02d}.txt").write_text(text)
        texts.append(text)
    lines = []
    for index in range(10, 40):
        text = f"line {index}: " + words(index, 10 + index % 7)
        lines.append(json.dumps({"text": text, "id": index}))
        texts.append(text)
    lines[5:5] = ["", json.dumps({"text": None})]
    texts[15:15] = [""]  # the null record: a blank document in record order
    (root / "10-data.jsonl").write_text("\n".join(lines) + "\n")
    table_texts = [f"row {index}: " + words(index, 15) for index in range(40, 70)]
    pq.write_table(pa.table({"text": table_texts}), root / "20-table.parquet")
    texts.extend(table_texts)
    return root, texts


@pytest.fixture
def make_bpe_dir():
    """Write a tiny BPE tokenizer (trained on a few strings) the way Hugging Face saves one."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    def build(directory: Path, eos: str | None = "<eos>") -> Path:
        raw = Tokenizer(models.BPE(unk_token="<unk>"))
        raw.pre_tokenizer = pre_tokenizers.Whitespace()
        trainer = trainers.BpeTrainer(vocab_size=120, special_tokens=["<unk>", "<eos>", "<bos>"])
        raw.train_from_iterator(["the cat sat on the mat", "the dog ate the cat food",
                                 "a mat for the dog and the cat"] * 5, trainer=trainer)
        specials = {"eos_token": eos, "bos_token": "<bos>"} if eos else {}
        PreTrainedTokenizerFast(tokenizer_object=raw, unk_token="<unk>",
                                **specials).save_pretrained(str(directory))
        return directory

    return build


@pytest.fixture
def make_config(tmp_path: Path):
    """Build a tiny run config: `make_config(source=..., storage=...)`; seq_len 32, 8 rows per
    shard."""

    def build(storage: Path | str = tmp_path / "runs", **data: object) -> RunConfig:
        fields = {"seq_len": 32, "rows_per_shard": 8, "val_fraction": 0.25, **data}
        return RunConfig(model=Shape(layers=1, hidden=16, heads=2), storage=str(storage),
                         data=DataConfig(**fields),
                         train=TrainConfig(tokens=64, batch_tokens=64, micro_batch=2))

    return build
