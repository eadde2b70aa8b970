"""Sources and check_sources: which files a source names, their documents, clear refusals (no
Ray)."""

from __future__ import annotations

import json
import sysconfig
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from raygrow.config import DataConfig
from raygrow.data import check_sources
from raygrow.data.sources import first_files, read_documents, resolve_source
from raygrow.errors import DataError


def refused(config: DataConfig) -> str:
    """check_sources' one-line message for a bad config."""
    with pytest.raises(DataError) as error:
        check_sources(config)
    message = str(error.value)
    assert message and "\n" not in message
    return message


def test_directory_lists_supported_files_sorted(corpus) -> None:
    root, _ = corpus
    (root / "README.md").write_text("not a document")
    (root / ".hidden").mkdir()
    (root / ".hidden" / "secret.txt").write_text("skipped")
    files = resolve_source(str(root))
    assert [Path(file.path).relative_to(root).as_posix() for file in files][-2:] == [
        "10-data.jsonl", "20-table.parquet"]
    assert [file.kind for file in files] == ["text"] * 10 + ["jsonl", "parquet"]
    assert all(file.size > 0 for file in files)


def test_glob_and_single_file(corpus) -> None:
    root, _ = corpus
    assert len(resolve_source(str(root / "00-notes" / "*.txt"))) == 10
    assert len(resolve_source(str(root / "**" / "*.jsonl"))) == 1
    assert [file.kind for file in resolve_source(str(root / "20-table.parquet"))] == ["parquet"]


def test_stdlib_source_is_python_sources_without_site_packages() -> None:
    files = resolve_source("stdlib")
    paths = [file.path for file in files]
    assert len(paths) > 100 and paths == sorted(paths)
    assert all(path.endswith(".py") and "site-packages" not in path for path in paths)
    assert any(path.endswith("/json/decoder.py") for path in paths)
    assert all(path.startswith(sysconfig.get_paths()["stdlib"]) for path in paths)


def test_documents_of_each_kind(corpus) -> None:
    root, texts = corpus
    documents = [document.text for file in resolve_source(str(root))
                 for document in read_documents(file, "text")]
    assert documents == texts


def test_first_files_caps_reading(corpus) -> None:
    root, texts = corpus
    files = resolve_source(str(root))
    assert len(first_files(files, 3)) == 3  # three .txt files hold the first three documents
    chosen = first_files(files, 12)  # 10 txt + the jsonl (count unknown) + the parquet (maybe)
    assert [cap for _, cap in chosen] == [12 - index for index in range(10)] + [2, 2]
    assert first_files(files, None)[-1][1] is None


def test_missing_path() -> None:
    message = refused(DataConfig(source="/no/such/corpus"))
    assert "/no/such/corpus" in message and "does not exist" in message


def test_empty_directory(tmp_path: Path) -> None:
    (tmp_path / "notes.md").write_text("unsupported type only")
    message = refused(DataConfig(source=str(tmp_path)))
    assert str(tmp_path) in message and ".txt" in message


def test_glob_matching_nothing(tmp_path: Path) -> None:
    assert "matches no" in refused(DataConfig(source=str(tmp_path / "*.jsonl")))


def test_unsupported_file(tmp_path: Path) -> None:
    (tmp_path / "data.csv").write_text("a,b")
    assert "data.csv" in refused(DataConfig(source=str(tmp_path / "data.csv")))


def test_all_files_empty(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("")
    assert "empty" in refused(DataConfig(source=str(tmp_path)))


def test_jsonl_without_the_field(tmp_path: Path) -> None:
    (tmp_path / "data.jsonl").write_text(json.dumps({"content": "hello"}) + "\n")
    message = refused(DataConfig(source=str(tmp_path)))
    assert "data.jsonl line 1" in message and "'text'" in message and "data.text_field" in message


def test_jsonl_bad_line_and_wrong_type(tmp_path: Path) -> None:
    (tmp_path / "a.jsonl").write_text('{"text": "ok"}\n{"text": 3}\nnot json\n')
    file = resolve_source(str(tmp_path))[0]
    with pytest.raises(DataError, match="a.jsonl line 2: field 'text' is int"):
        list(read_documents(file, "text"))
    (tmp_path / "a.jsonl").write_text('{"text": "ok"}\nnot json\n')
    with pytest.raises(DataError, match="a.jsonl line 2 is not valid JSON"):
        list(read_documents(file, "text"))


def test_parquet_without_the_column(tmp_path: Path) -> None:
    pq.write_table(pa.table({"body": ["hello"]}), tmp_path / "t.parquet")
    message = refused(DataConfig(source=str(tmp_path)))
    assert "t.parquet has no column 'text'" in message and "body" in message


def test_parquet_column_that_is_not_text(tmp_path: Path) -> None:
    pq.write_table(pa.table({"text": [1, 2]}), tmp_path / "t.parquet")
    assert "not text" in refused(DataConfig(source=str(tmp_path)))


def test_text_field_is_used(tmp_path: Path) -> None:
    (tmp_path / "data.jsonl").write_text(json.dumps({"body": "hello"}) + "\n")
    check_sources(DataConfig(source=str(tmp_path), text_field="body"))


def test_bad_tokenizer_is_caught_early(corpus) -> None:
    root, _ = corpus
    assert "data.tokenizer" in refused(DataConfig(source=str(root),
                                                  tokenizer=str(root / "missing")))


def test_non_utf8_is_replaced_and_flagged(tmp_path: Path) -> None:
    (tmp_path / "latin1.txt").write_bytes("café".encode("latin-1"))
    (tmp_path / "bad.jsonl").write_bytes(b'{"text": "a\xff"}\n{"text": "fine"}\n'
                                         b'{"text": "\\ud800x"}\n')
    documents = [document for file in resolve_source(str(tmp_path))
                 for document in read_documents(file, "text")]
    assert [(d.text, d.replaced) for d in documents] == [
        ("a\ufffd", True), ("fine", False), ("?x", True), ("caf\ufffd", True)]
