"""Corpus sources: which files a `data.source` names, and the documents inside each file.

A source is "stdlib" (this Python's standard-library .py files; "stdlib:GLOB" those whose path
under the stdlib root matches GLOB, e.g. "stdlib:email/*"), a file, a directory (its
.txt/.jsonl/.parquet/.arrow files, recursively) or a glob. Documents: a .txt (or stdlib .py) file
is one document, a .jsonl line is one document (field `text_field`), a .parquet or .arrow row is
one document (column `text_field`). A Hugging Face `datasets` directory written by
`save_to_disk` is a directory of .arrow files: listed in the order `load_from_disk` gives them
and read with the `datasets` library. Files are otherwise taken in sorted path order, so "the
first N documents" and everything downstream are deterministic.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import sysconfig
from collections.abc import Iterator
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq

from raygrow.config import DataConfig, SourceConfig
from raygrow import storage
from raygrow.data.tokenizer import load_tokenizer
from raygrow.errors import DataError

STDLIB = "stdlib"
KINDS = {".txt": "text", ".jsonl": "jsonl", ".parquet": "parquet", ".arrow": "arrow"}
SUPPORTED = ".txt, .jsonl, .parquet or .arrow"
SAVED_DATASET = "state.json"  # what `datasets.Dataset.save_to_disk` writes beside its .arrow files
SAVED_DATASET_DICT = "dataset_dict.json"  # ... and `DatasetDict.save_to_disk` above its splits
PARQUET_BATCH_ROWS = 1024


@dataclass(frozen=True)
class SourceFile:
    path: str  # as the resolver names it (absolute for local files)
    kind: str  # "text" (one document per file), "jsonl" or "parquet"
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class Document:
    text: str
    replaced: bool  # undecodable bytes (or lone surrogates) were replaced with U+FFFD / "?"


def resolve_source(source: str) -> list[SourceFile]:
    """The files a source names, sorted by path. DataError if there are none."""
    try:
        return _resolve(source)
    except OSError as error:  # e.g. a folder without read permission
        raise DataError(f"data.source: cannot list {source} ({error}); check its "
                        "permissions") from None


def _resolve(source: str) -> list[SourceFile]:
    if source == STDLIB or source.startswith(f"{STDLIB}:"):
        return _stdlib_files(source.partition(":")[2])
    if any(char in source for char in storage.GLOB_CHARS):
        return _glob_files(source)
    entry = storage.info(source)
    if entry.type == storage.FileType.NotFound:
        raise DataError(f"data.source: {source} does not exist; give 'stdlib', a file, a directory "
                        "or a glob")
    if entry.type == storage.FileType.Directory:
        saved = _saved_dataset_files(source, entry.path)
        files = saved if saved is not None else _supported(storage.list_files(source),
                                                           root=entry.path)
        if not files:
            raise DataError(f"data.source: directory {source} holds no {SUPPORTED} files; add some "
                            "or point data.source elsewhere")
        return files
    kind = KINDS.get(os.path.splitext(entry.path)[1])
    if kind is None:
        raise DataError(f"data.source: {source} is not a {SUPPORTED} file; rename it or give its "
                        "directory")
    return [_source_file(entry, kind)]


def _stdlib_files(pattern: str = "") -> list[SourceFile]:
    """The stdlib's .py files; with `pattern`, those whose path under the root matches it
    (fnmatch: `*` also crosses `/`)."""
    root = sysconfig.get_paths()["stdlib"]
    entries = []
    for entry in storage.list_files(root, recursive=False):
        if entry.type == storage.FileType.File:
            entries.append(entry)
        elif entry.base_name not in ("site-packages", "dist-packages"):  # third-party code: skip
            entries.extend(storage.list_files(entry.path))
    files = [_source_file(entry, "text") for entry in entries if entry.path.endswith(".py")
             and (not pattern or fnmatch.fnmatchcase(os.path.relpath(entry.path, root), pattern))]
    files.sort(key=lambda file: file.path)
    if not files and pattern:
        raise DataError(f"data.source: stdlib:{pattern} matches no .py file under {root}; check "
                        "the pattern (e.g. stdlib:email/*)")
    if not files:
        raise DataError(f"data.source: stdlib: no .py files under {root}; this Python ships "
                        "without its sources, so give a corpus path instead")
    return files


def _saved_dataset_files(source: str, directory: str) -> list[SourceFile] | None:
    """A `save_to_disk` directory's .arrow files in the dataset's own order (None: not one)."""
    if storage.exists(f"{directory}/{SAVED_DATASET_DICT}"):
        splits = sorted(entry.base_name for entry in storage.list_files(directory, recursive=False)
                        if entry.type == storage.FileType.Directory)
        raise DataError(f"data.source: {source} is a datasets DatasetDict (splits: "
                        f"{', '.join(splits)}); give one split's directory, e.g. "
                        f"{source.rstrip('/')}/{splits[0] if splits else 'train'}")
    if not storage.exists(f"{directory}/{SAVED_DATASET}"):
        return None
    if storage.is_remote(directory):
        raise DataError(f"data.source: {source}: a datasets directory is read from a local disk; "
                        "copy it there, or write it as parquet (Dataset.to_parquet)")
    import datasets

    try:
        saved = datasets.load_from_disk(directory)
    except Exception as error:  # noqa: BLE001 (datasets raises many types: OS, JSON, Arrow errors)
        raise DataError(f"data.source: {source} is not a readable datasets directory "
                        f"({_first_line(error)}); write it again with save_to_disk") from None
    if not isinstance(saved, datasets.Dataset):
        raise DataError(f"data.source: {source} holds a {type(saved).__name__}; give one split's "
                        "directory")
    paths = [item["filename"] for item in saved.cache_files]
    return [_source_file(storage.info(path), "arrow") for path in paths]


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _glob_files(pattern: str) -> list[SourceFile]:
    files = []
    for path in storage.glob(pattern):
        entry = storage.info(path)
        if entry.type == storage.FileType.Directory:
            files.extend(_supported(storage.list_files(path), root=entry.path))
        else:
            files.extend(_supported([entry], root=os.path.dirname(entry.path)))
    unique = {file.path: file for file in files}
    if not unique:
        raise DataError(f"data.source: glob {pattern} matches no {SUPPORTED} files; "
                        "check the pattern")
    return [unique[path] for path in sorted(unique)]


def _supported(entries, root: str) -> list[SourceFile]:
    """Entries with a supported suffix, skipping hidden files and folders (.git, .cache, ...)."""
    files = []
    for entry in entries:
        hidden = any(part.startswith(".")
                     for part in os.path.relpath(entry.path, root).split(os.sep))
        kind = KINDS.get(os.path.splitext(entry.path)[1])
        if kind and not hidden:
            files.append(_source_file(entry, kind))
    return files


def _source_file(entry, kind: str) -> SourceFile:
    return SourceFile(path=entry.path, kind=kind, size=entry.size, mtime_ns=entry.mtime_ns or 0)


def known_records(file: SourceFile) -> int | None:
    """How many documents a file holds when that is cheap to know (jsonl: unknown without
    reading)."""
    if file.kind == "text":
        return 1
    if file.kind == "parquet":
        return _parquet_file(file).metadata.num_rows
    if file.kind == "arrow":
        return len(_arrow_dataset(file))
    return None


def first_files(files: list[SourceFile],
                max_documents: int | None) -> list[tuple[SourceFile, int | None]]:
    """The files that can hold the first `max_documents` documents, each with a cap on how many of
    its documents can be needed (None: no cap). Applied before any reading, so tiny runs stay
    tiny."""
    if max_documents is None:
        return [(file, None) for file in files]
    chosen, known_before = [], 0
    for file in files:
        if known_before >= max_documents:
            break
        chosen.append((file, max_documents - known_before))
        known_before += known_records(file) or 0  # jsonl counts 0: a lower bound keeps caps safe
    return chosen


def check_sources(config: DataConfig, listed: list[list[SourceFile]] | None = None) -> None:
    """Cheap checks before any cluster work: every source's files exist and look right, the
    tokenizer loads (`listed`: each source's listing, when the caller has it).

    Raises DataError with one line naming the source's field, the path and what to do.
    """
    for index, source in enumerate(config.mixture):
        try:
            files = resolve_source(source.source) if listed is None else listed[index]
            _check_source(source, files, config.max_documents)
        except DataError as error:
            raise relabel(error, config, index) from None
    load_tokenizer(config.tokenizer)


def _check_source(source: SourceConfig, files: list[SourceFile], max_documents: int | None) -> None:
    if all(file.size == 0 for file in files):
        raise DataError(f"data.source: {source.source}: every file is empty; add text")
    chosen = first_files(files, max_documents)
    for file, _ in chosen:
        if file.kind == "jsonl":
            next(read_documents(file, source.text_field, limit=1), None)
        elif file.kind in ("parquet", "arrow"):
            _text_column(file, source.text_field)
    # Stops at the first document with text, so only an all-blank corpus is read through.
    if not any(document.text.strip() for file, cap in chosen
               for document in read_documents(file, source.text_field, limit=cap)):
        raise DataError(f"data.source: {source.source} holds no text (every document is empty or "
                        "blank); point data.source at a real corpus")


def relabel(error: DataError, config: DataConfig, index: int) -> DataError:
    """`error` about source `index` of a mixture, naming `data.sources[index].…` instead of the
    single-source fields the readers name (they do not know which source they read)."""
    if config.sources is None:
        return error
    text = re.sub(r"data\.source\b", f"data.sources[{index}].source", str(error))
    return DataError(re.sub(r"data\.text_field\b", f"data.sources[{index}].text_field", text))


def read_documents(file: SourceFile, text_field: str,
                   limit: int | None = None) -> Iterator[Document]:
    """The documents of one file, in order, at most `limit`. Blank documents are yielded too (they
    count towards max_documents); DataError names the file (and line) for malformed records."""
    if limit is not None and limit <= 0:
        return
    if file.kind == "text":
        yield _decode(_read(file))
    elif file.kind == "jsonl":
        yield from _jsonl_documents(file, text_field, limit)
    elif file.kind == "arrow":
        yield from _arrow_documents(file, text_field, limit)
    else:
        yield from _parquet_documents(file, text_field, limit)


def _read(file: SourceFile) -> bytes:
    try:
        return storage.read_bytes(file.path)
    except OSError as error:
        raise _unreadable(file, error) from None


def _lines(file: SourceFile) -> Iterator[bytes]:
    try:
        yield from storage.iter_lines(file.path)
    except OSError as error:
        raise _unreadable(file, error) from None


def _unreadable(file: SourceFile, error: OSError) -> DataError:
    return DataError(f"data.source: cannot read {file.path} ({error.strerror or error}); check "
                     "its permissions")


def _decode(data: bytes) -> Document:
    try:
        return Document(data.decode("utf-8"), replaced=False)
    except UnicodeDecodeError:
        return Document(data.decode("utf-8", errors="replace"), replaced=True)


def _jsonl_documents(file: SourceFile, text_field: str, limit: int | None) -> Iterator[Document]:
    produced = 0
    for number, line in enumerate(_lines(file), start=1):
        if not line.strip():
            continue
        decoded = _decode(line)
        try:
            record = json.loads(decoded.text)
        except json.JSONDecodeError as error:
            raise DataError(f"data.source: {file.path} line {number} is not valid JSON "
                            f"({error.msg}); fix or remove the line") from None
        if not isinstance(record, dict) or text_field not in record:
            raise DataError(f"data.source: {file.path} line {number} has no field {text_field!r}; "
                            "set data.text_field to the field holding the text")
        text = record[text_field]
        if text is not None and not isinstance(text, str):
            raise DataError(f"data.source: {file.path} line {number}: field {text_field!r} is "
                            f"{type(text).__name__}, not a string; set data.text_field")
        yield _without_surrogates(text or "", decoded.replaced)
        produced += 1
        if limit is not None and produced >= limit:
            return


def _without_surrogates(text: str, replaced: bool) -> Document:
    """JSON escapes can encode lone surrogates, which have no UTF-8 form; replace them."""
    try:
        text.encode("utf-8")
        return Document(text, replaced)
    except UnicodeEncodeError:
        return Document(text.encode("utf-8", "replace").decode("utf-8"), replaced=True)


def _parquet_file(file: SourceFile) -> pq.ParquetFile:
    filesystem, local = storage.resolve(file.path)
    try:
        return pq.ParquetFile(filesystem.open_input_file(local))
    except (OSError, pa.ArrowInvalid) as error:
        raise DataError(f"data.source: {file.path} is not a readable parquet file ({error}); "
                        "replace or remove it") from None


def _arrow_dataset(file: SourceFile):
    """An .arrow file (Arrow IPC stream, as `datasets` writes) as a memory-mapped Dataset."""
    import datasets

    if storage.is_remote(file.path):
        raise DataError(f"data.source: {file.path}: .arrow files are read from a local disk; copy "
                        "them there, or write the dataset as parquet")
    try:
        return datasets.Dataset.from_file(file.path, in_memory=False)
    except Exception as error:  # noqa: BLE001 (pyarrow and datasets errors: not a dataset file)
        raise DataError(f"data.source: {file.path} is not a readable .arrow dataset file "
                        f"({_first_line(error)}); replace or remove it") from None


def _text_column(file: SourceFile, text_field: str):
    """The parquet file or Dataset of `file`, after checking it has a text column `text_field`."""
    table = _arrow_dataset(file) if file.kind == "arrow" else _parquet_file(file)
    schema = table.data.schema if file.kind == "arrow" else table.schema_arrow
    if text_field not in schema.names:
        raise DataError(f"data.source: {file.path} has no column {text_field!r} (columns: "
                        f"{', '.join(schema.names)}); set data.text_field")
    kind = schema.field(text_field).type
    if not (pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_binary(kind)
            or pa.types.is_large_binary(kind)):
        raise DataError(f"data.source: {file.path} column {text_field!r} is {kind}, not text; set "
                        "data.text_field")
    return table


def _parquet_documents(file: SourceFile, text_field: str, limit: int | None) -> Iterator[Document]:
    parquet = _text_column(file, text_field)
    batches = parquet.iter_batches(batch_size=PARQUET_BATCH_ROWS, columns=[text_field])
    yield from _column_documents((batch.column(0) for batch in batches), limit)


def _arrow_documents(file: SourceFile, text_field: str, limit: int | None) -> Iterator[Document]:
    dataset = _text_column(file, text_field).select_columns([text_field]).with_format("arrow")
    batches = dataset.iter(batch_size=PARQUET_BATCH_ROWS)
    yield from _column_documents((batch.column(0) for batch in batches), limit)


def _column_documents(columns: Iterator[pa.Array], limit: int | None) -> Iterator[Document]:
    """The documents of a text column, read in batches; at most `limit`."""
    produced = 0
    for column in columns:
        for value in column.to_pylist():
            if isinstance(value, bytes):  # a binary column: decode like a text file
                yield _decode(value)
            else:  # arrow strings are valid UTF-8 already; null is a blank document
                yield Document(value or "", replaced=False)
            produced += 1
            if limit is not None and produced >= limit:
                return
