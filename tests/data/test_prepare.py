"""prepare(): the Ray Data pipeline end to end on small corpora (local 2-CPU Ray cluster)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from raygrow.data import Manifest, PackedRows, dataset_dir, load_tokenizer, prepare
from raygrow.data import packed as packed_module
from raygrow.data import pipeline
from raygrow.errors import DataError

pytestmark = pytest.mark.ray


def split_rows(directory: str, split: str) -> np.ndarray:
    rows = PackedRows(directory, split, shuffle_seed=None)
    return rows.take(0, rows.num_rows)[1]


def documents_in(rows: np.ndarray, eos_id: int) -> list[str]:
    """The complete documents in a split's rows: the pieces between EOS tokens (the last one may be
    cut)."""
    stream = rows.reshape(-1)
    ends = np.flatnonzero(stream == eos_id)
    starts = np.concatenate([[0], ends[:-1] + 1])
    return [bytes(stream[start:end].astype(np.uint8)).decode("utf-8")
            for start, end in zip(starts, ends)]


def test_prepare_mixed_corpus(ray_local, corpus, make_config) -> None:
    root, texts = corpus
    config = make_config(source=str(root))
    manifest = prepare(config, show_progress=False)
    directory = dataset_dir(config)
    assert Manifest.load(directory) == manifest
    row = config.data.seq_len + 1

    # counts agree with each other and with the files
    assert manifest.train_rows == sum(manifest.train_shard_rows) > 0
    assert manifest.val_rows == sum(manifest.val_shard_rows) > 0
    assert manifest.train_tokens == manifest.train_rows * row
    assert set(manifest.train_shard_rows[:-1]) <= {config.data.rows_per_shard}
    assert manifest.documents == sum(1 for text in texts if text.strip())
    assert (manifest.vocab_size, manifest.eos_id, manifest.replaced_documents) == (258, 256, 0)
    assert (manifest.source, manifest.tokenizer, manifest.seq_len) == (str(root), "byte", 32)

    # every row is seq_len + 1 tokens; documents come back whole, in corpus order, EOS between them
    train, val = split_rows(directory, "train"), split_rows(directory, "val")
    assert train.shape == (manifest.train_rows, row) and val.shape == (manifest.val_rows, row)
    train_documents, val_documents = documents_in(train, 256), documents_in(val, 256)
    present = [text for text in texts if text.strip()]
    assert train_documents == [text for text in present if text in set(train_documents)]
    assert val_documents == [text for text in present if text in set(val_documents)]
    # the split is by document: no document in both, and all but the cut-off tails are present
    assert not set(train_documents) & set(val_documents)
    assert len(train_documents) + len(val_documents) >= len(present) - 2


def test_prepare_is_deterministic_and_reused(ray_local, corpus, make_config, tmp_path,
                                            monkeypatch) -> None:
    root, _ = corpus
    first = make_config(tmp_path / "a", source=str(root))
    second = make_config(tmp_path / "b", source=str(root))
    manifest = prepare(first, show_progress=False)
    monkeypatch.setattr(pipeline, "BYTES_PER_BLOCK", 1)  # one file per Ray block this time
    assert prepare(second, show_progress=False) == manifest
    directories = dataset_dir(first), dataset_dir(second)
    assert directories[0] != directories[1]
    for name in manifest.train_shards + manifest.val_shards:
        assert Path(directories[0], name).read_bytes() == Path(directories[1], name).read_bytes()

    before = {path.name: path.stat().st_mtime_ns for path in Path(directories[0]).iterdir()}
    assert prepare(first, show_progress=False) == manifest
    after = {path.name: path.stat().st_mtime_ns for path in Path(directories[0]).iterdir()}
    assert after == before  # nothing rewritten

    # another setting that changes the rows gets its own directory
    assert dataset_dir(make_config(tmp_path / "a", source=str(root), seq_len=16)) != directories[0]


def test_max_documents_takes_the_first_documents(ray_local, corpus, make_config) -> None:
    root, texts = corpus
    config = make_config(source=str(root), max_documents=15, val_fraction=0.3, seq_len=8)
    manifest = prepare(config, show_progress=False)
    # the first 15 records: 10 .txt files and 5 jsonl lines (one of them a null text)
    assert manifest.documents == sum(1 for text in texts[:15] if text.strip())
    directory = dataset_dir(config)
    seen = (documents_in(split_rows(directory, "train"), 256)
            + documents_in(split_rows(directory, "val"), 256))
    assert set(seen) <= set(texts[:15])


def test_stdlib_source_with_few_documents(ray_local, make_config) -> None:
    config = make_config(source="stdlib", max_documents=40, val_fraction=0.3, rows_per_shard=256)
    manifest = prepare(config, show_progress=False)
    assert 0 < manifest.documents <= 40
    assert manifest.train_rows > 0 and manifest.val_rows > 0
    assert manifest.source == "stdlib"


def test_hugging_face_tokenizer(ray_local, tmp_path, make_config, make_bpe_dir) -> None:
    source = tmp_path / "text"
    source.mkdir()
    texts = [f"the cat sat on the mat {'and the dog ' * (index % 4)}{index}" for index in range(30)]
    for index, text in enumerate(texts):
        (source / f"{index:02d}.txt").write_text(text)
    tokenizer_dir = make_bpe_dir(tmp_path / "bpe")
    config = make_config(source=str(source), tokenizer=str(tokenizer_dir), seq_len=8,
                         val_fraction=0.3)
    manifest = prepare(config, show_progress=False)
    tokenizer = load_tokenizer(str(tokenizer_dir))
    assert (manifest.vocab_size, manifest.eos_id) == (tokenizer.vocab_size, tokenizer.eos_id)
    assert manifest.tokenizer_fingerprint == tokenizer.fingerprint
    # every complete piece between EOS tokens is one document's encoding
    encoded = {tuple(ids.tolist()) for ids in tokenizer.encode_batch(texts)}
    stream = split_rows(dataset_dir(config), "train").reshape(-1)
    pieces = np.split(stream, np.flatnonzero(stream == tokenizer.eos_id) + 1)[:-1]
    assert len(pieces) >= 10
    assert all(tuple(piece[:-1].tolist()) in encoded for piece in pieces)
    assert stream.max() < tokenizer.vocab_size


# ---- bad input --------------------------------------------------------------------------------


def assert_nothing_written(config) -> None:
    root = Path(config.dataset_root)
    assert not root.exists() or not any(root.iterdir()), list(root.iterdir())


def test_missing_source(ray_local, make_config, tmp_path) -> None:
    config = make_config(source=str(tmp_path / "missing"))
    with pytest.raises(DataError, match="missing does not exist"):
        prepare(config, show_progress=False)
    assert_nothing_written(config)


def test_blank_corpus(ray_local, make_config, tmp_path) -> None:
    for name in ("a.txt", "b.txt"):
        (tmp_path / name).write_text("  \n\t\n")
    config = make_config(source=str(tmp_path / "*.txt"))
    with pytest.raises(DataError) as error:
        prepare(config, show_progress=False)
    assert "holds no text" in str(error.value) and "*.txt" in str(error.value)
    assert "\n" not in str(error.value)
    assert_nothing_written(config)


def test_corpus_too_small_for_validation(ray_local, make_config, tmp_path) -> None:
    (tmp_path / "one.txt").write_text("a single short document")
    config = make_config(source=str(tmp_path), seq_len=4)
    with pytest.raises(DataError, match="(training|validation) row"):
        prepare(config, show_progress=False)
    assert_nothing_written(config)


def test_non_utf8_text_is_replaced_and_counted(ray_local, corpus, make_config) -> None:
    root, _ = corpus
    (root / "00-notes" / "latin1.txt").write_bytes("caf\xe9 au lait, ".encode("latin-1") * 20)
    manifest = prepare(make_config(source=str(root)), show_progress=False)
    assert manifest.replaced_documents == 1


def test_jsonl_missing_field_on_a_later_line(ray_local, make_config, tmp_path) -> None:
    lines = [json.dumps({"text": f"document {index} " * 20}) for index in range(20)]
    lines.append(json.dumps({"body": "wrong field"}))
    (tmp_path / "data.jsonl").write_text("\n".join(lines))
    config = make_config(source=str(tmp_path))
    with pytest.raises(DataError) as error:  # raised inside a Ray task, reported as one line
        prepare(config, show_progress=False)
    assert str(error.value).startswith("data.source:") and "data.jsonl line 21" in str(error.value)
    assert "\n" not in str(error.value)
    assert_nothing_written(config)


# ---- crash safety -----------------------------------------------------------------------------


def test_incomplete_directories_are_not_taken_as_complete(ray_local, corpus, make_config) -> None:
    root, _ = corpus
    config = make_config(source=str(root))
    directory = Path(dataset_dir(config))
    # a crash left a temp dir with shards, and a dataset dir with a shard but no manifest
    leftover = directory.parent / f".{directory.name}.tmp-deadbeef"
    leftover.mkdir(parents=True)
    (leftover / "train-00000.parquet").write_bytes(b"half")
    directory.mkdir()
    (directory / "train-00000.parquet").write_bytes(b"half")
    with pytest.raises(DataError):
        Manifest.load(str(directory))

    manifest = prepare(config, show_progress=False)
    assert Manifest.load(str(directory)) == manifest
    assert PackedRows(str(directory)).take(0, 2)[1].shape == (2, 33)


def test_crash_while_writing_leaves_nothing(ray_local, corpus, make_config, monkeypatch) -> None:
    root, _ = corpus
    config = make_config(source=str(root))
    real_write = packed_module.ShardWriter._write

    def crash_after_first_shard(writer, tokens):
        if writer.shards:
            raise RuntimeError("simulated crash")
        real_write(writer, tokens)

    monkeypatch.setattr(packed_module.ShardWriter, "_write", crash_after_first_shard)
    with pytest.raises(RuntimeError, match="simulated crash"):
        prepare(config, show_progress=False)
    assert_nothing_written(config)
    assert not os.path.exists(dataset_dir(config))
