"""Turn a corpus into packed parquet shards with Ray Data.

    files (sorted) ─ Ray Data: read documents → tokenize + split (map_batches) ─► driver, in order:
    EOS after every document → cut rows of seq_len + 1 → fixed-size shards → manifest.json

Ray does the expensive part (reading, decoding, tokenizing) in parallel; the driver only
concatenates token arrays and writes shards. With `preserve_order` the driver sees documents in
file order, so the same config gives byte-identical shards. Documents go to validation by a hash
of their text, so the split never depends on order or on which other documents are present.

Crash safety: everything is written into a hidden temp directory, manifest last, then renamed to
the dataset directory; a directory without a valid manifest is never taken as complete. On S3,
which cannot rename, the shards are written in place, manifest last, for the same guarantee.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from raygrow.config import DataConfig, RunConfig
from raygrow import storage
from raygrow.data.manifest import FORMAT_VERSION, Manifest
from raygrow.data.packed import ShardWriter
from raygrow.data.sources import SourceFile, check_sources, first_files, read_documents, resolve_source
from raygrow.data.tokenizer import Tokenizer, load_tokenizer, normalize_spec
from raygrow.errors import DataError

logger = logging.getLogger("raygrow.data")

BYTES_PER_BLOCK = 4 << 20  # source bytes per read task: enough work to hide task overhead


@dataclass
class DatasetPlan:
    """Everything decided before reading: the files to read, the tokenizer, the output directory.
    A driver makes it once (`plan_dataset`): the corpus is listed and the tokenizer loaded once."""

    config: DataConfig
    files: list[tuple[SourceFile, int | None]]  # (file, cap on documents needed from it)
    tokenizer: Tokenizer
    directory: str


def plan_dataset(config: RunConfig) -> DatasetPlan:
    """Check the corpus and tokenizer (one line naming what is wrong, no Ray) and decide where
    the packed shards go."""
    data = config.data
    listed = resolve_source(data.source)
    check_sources(data, listed)
    files = first_files(listed, data.max_documents)
    tokenizer = load_tokenizer(data.tokenizer)
    key_fields = {
        "format": FORMAT_VERSION,
        "source": data.source,
        "files": [(file.path, file.size, file.mtime_ns) for file, _ in files],
        "text_field": data.text_field,
        "tokenizer": tokenizer.fingerprint,
        "seq_len": data.seq_len,
        "val_fraction": data.val_fraction,
        "max_documents": data.max_documents,
        "rows_per_shard": data.rows_per_shard,
    }
    digest = hashlib.sha256(json.dumps(key_fields, sort_keys=True).encode()).hexdigest()[:16]
    root = storage.canonical(config.dataset_root)
    return DatasetPlan(data, files, tokenizer, f"{root}/{_slug(data)}-{digest}")


def _slug(data: DataConfig) -> str:
    """A readable prefix for the directory name, e.g. `stdlib-byte-128`."""
    source = data.source.rstrip("/").split("/")[-1] or "corpus"
    tokenizer = data.tokenizer.rstrip("/").split("/")[-1] or "tokenizer"
    return re.sub(r"[^A-Za-z0-9._-]+", "_", f"{source}-{tokenizer}-{data.seq_len}").strip("._")[:60]


def dataset_dir(config: RunConfig) -> str:
    """Where `prepare` puts (or finds) the packed shards for this config: `<dataset_root>/<key>`.

    The key hashes everything that changes the rows: source and its file list (paths, sizes,
    mtimes), text field, tokenizer fingerprint, seq_len, val_fraction, max_documents, shard size.
    """
    return plan_dataset(config).directory


def prepare(config: RunConfig, show_progress: bool = True, plan: DatasetPlan | None = None) -> Manifest:
    """Pack the configured corpus into shards under `dataset_dir(config)` and return its manifest
    (`plan`: the driver's `plan_dataset(config)`, when it has one).

    Idempotent: a directory that already holds a complete manifest is returned untouched.
    Raises DataError (one line naming the source) for an unusable or empty corpus.
    """
    plan = plan or plan_dataset(config)
    with contextlib.suppress(DataError):
        manifest = Manifest.load(plan.directory)
        logger.info("dataset %s is already prepared (%d train rows); reusing it", plan.directory,
                    manifest.train_rows)
        return manifest
    if storage.is_remote(plan.directory):
        return _prepare_in_place(plan, show_progress)
    parent, name = plan.directory.rsplit("/", 1)
    temp = f"{parent}/.{name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        storage.make_dirs(temp)
    except OSError as error:
        raise DataError(f"cannot create {temp} ({error}); make `storage` (or data.cache_dir) a "
                        "writable directory") from None
    try:
        manifest = _pack(plan, temp, show_progress)
        manifest.save(temp)  # last: a directory with a manifest is complete
        return _publish(temp, plan.directory, manifest)
    finally:
        storage.remove_tree(temp)  # gone after a publish; a half-written attempt otherwise


def _prepare_in_place(plan: DatasetPlan, show_progress: bool) -> Manifest:
    """Object stores: write straight into the dataset directory (a rename would copy every shard);
    the manifest, written last, marks it complete, and a leftover without one is cleared first.
    Two processes preparing the same key write the same bytes."""
    storage.remove_tree(plan.directory)
    manifest = _pack(plan, plan.directory, show_progress)
    manifest.save(plan.directory)
    _log_prepared(plan.directory, manifest)
    return manifest


def _log_prepared(directory: str, manifest: Manifest) -> None:
    logger.info("prepared %s: %d train rows in %d shards, %d validation rows, %d documents",
                directory, manifest.train_rows, len(manifest.train_shards), manifest.val_rows,
                manifest.documents)


def _publish(temp: str, directory: str, manifest: Manifest) -> Manifest:
    """Rename the finished temp directory into place; if another process won the race, use theirs."""
    if storage.exists(directory):
        with contextlib.suppress(DataError):
            return Manifest.load(directory)  # completed meanwhile by another process
        logger.warning("removing incomplete dataset directory %s (no valid manifest)", directory)
        storage.remove_tree(directory)
    try:
        storage.rename(temp, directory)
    except OSError as error:
        with contextlib.suppress(DataError):
            return Manifest.load(directory)  # another process published first: same config, same rows
        raise DataError(f"cannot move the prepared dataset to {directory} ({error}); check that "
                        "the directory is writable") from None
    _log_prepared(directory, manifest)
    return manifest


# ---- the Ray Data pipeline ---------------------------------------------------------------------


def _pack(plan: DatasetPlan, temp: str, show_progress: bool) -> Manifest:
    data = plan.config
    writers = {split: ShardWriter(temp, split, data.seq_len, data.rows_per_shard)
               for split in ("train", "val")}
    documents = replaced = records = 0
    logger.info("preparing %s (%d files) with tokenizer %s", data.source, len(plan.files), data.tokenizer)
    for batch in _tokenized_batches(plan, show_progress):
        if data.max_documents is not None:  # file caps over-read jsonl; cut exactly here
            batch = batch.slice(0, max(0, data.max_documents - records))
        records += batch.num_rows
        failed = pc.drop_null(batch["error"])
        if len(failed):
            raise DataError(failed[0].as_py())
        used = batch.filter(pc.greater(pc.list_value_length(batch["tokens"]), 0))
        documents += used.num_rows
        replaced += pc.sum(used["replaced"]).as_py() or 0
        for split, is_val in (("train", False), ("val", True)):
            chosen = used.filter(pc.equal(used["val"], is_val))
            writers[split].add(_with_eos(chosen["tokens"], plan.tokenizer.eos_id))
        if data.max_documents is not None and records >= data.max_documents:
            break
    for writer in writers.values():
        writer.finish()
    _check_not_empty(plan, documents, writers)
    if replaced:
        logger.warning("%d of %d documents in %s had bytes that are not UTF-8; they were replaced "
                       "with U+FFFD", replaced, documents, data.source)
    train, val = writers["train"], writers["val"]
    return Manifest(
        seq_len=data.seq_len, tokenizer=normalize_spec(data.tokenizer),
        tokenizer_fingerprint=plan.tokenizer.fingerprint, vocab_size=plan.tokenizer.vocab_size,
        eos_id=plan.tokenizer.eos_id, train_shards=train.shards, train_shard_rows=train.shard_rows,
        val_shards=val.shards, val_shard_rows=val.shard_rows, train_rows=train.rows,
        val_rows=val.rows, train_tokens=train.rows * (data.seq_len + 1), documents=documents,
        replaced_documents=replaced, source=data.source)


def _with_eos(tokens: pa.ChunkedArray, eos_id: int) -> np.ndarray:
    """The documents' tokens back to back, each followed by EOS."""
    documents = tokens.combine_chunks()
    offsets = documents.offsets.to_numpy()
    flat = documents.flatten().to_numpy(zero_copy_only=False)
    return np.insert(flat, offsets[1:] - offsets[0], eos_id)


def _check_not_empty(plan: DatasetPlan, documents: int, writers: dict[str, ShardWriter]) -> None:
    data = plan.config
    if documents == 0:
        raise DataError(f"data.source: {data.source} holds no text (every document is empty or "
                        "blank); point data.source at a real corpus")
    if writers["train"].rows == 0:
        raise DataError(f"data.source: {data.source} gives no training row of {data.seq_len + 1} "
                        f"tokens ({documents} documents); add text or lower data.seq_len")
    if writers["val"].rows == 0:
        raise DataError(f"data.source: {data.source} gives no validation row of {data.seq_len + 1} "
                        f"tokens ({documents} documents, val_fraction {data.val_fraction}); raise "
                        "data.val_fraction, add documents or lower data.seq_len")


def _tokenized_batches(plan: DatasetPlan, show_progress: bool) -> Iterator[pa.Table]:
    """Tokenized documents in file order, as pyarrow tables (tokens, val, replaced, error)."""
    import ray

    if not ray.is_initialized():
        ray.init()
    data = plan.config
    items = [{"path": file.path, "kind": file.kind, "size": file.size, "mtime_ns": file.mtime_ns,
              "cap": -1 if cap is None else cap} for file, cap in plan.files]
    total_bytes = sum(file.size for file, _ in plan.files)
    blocks = max(1, min(len(items), math.ceil(total_bytes / BYTES_PER_BLOCK)))
    with _data_context(show_progress):
        dataset = (ray.data.from_items(items, override_num_blocks=blocks)
                   .map_batches(_read_batch, batch_format="pyarrow", batch_size=None,
                                fn_kwargs={"text_field": data.text_field, "s3": storage.s3_settings()})
                   .map_batches(_tokenize_batch, batch_format="pyarrow", batch_size=None,
                                fn_kwargs={"tokenizer": normalize_spec(data.tokenizer),
                                           "val_fraction": data.val_fraction}))
        yield from dataset.iter_batches(batch_format="pyarrow", batch_size=None)


@contextlib.contextmanager
def _data_context(show_progress: bool):
    """Ray Data settings for this pipeline only; the caller's DataContext is restored after."""
    from ray.data import DataContext

    context = DataContext.get_current()
    saved = (context.execution_options.preserve_order, context.enable_progress_bars)
    context.execution_options.preserve_order = True  # deterministic shards need file order
    context.enable_progress_bars = show_progress
    try:
        yield
    finally:
        context.execution_options.preserve_order, context.enable_progress_bars = saved


def _read_batch(files: pa.Table, text_field: str, s3: storage.S3Settings) -> pa.Table:
    """Ray task: the documents of a block of files, in order.

    A malformed file ends the block with a row carrying the DataError's message: raised inside
    the task, Ray would wrap it into a multi-line traceback; as data, the driver raises it as the
    one-line error it is, at the right place in document order.
    """
    storage.configure_s3(s3.endpoint_url, s3.region)  # this task's process has its own settings
    texts, replaced, errors = [], [], []
    try:
        for item in files.to_pylist():
            cap = None if item["cap"] < 0 else item["cap"]
            file = SourceFile(item["path"], item["kind"], item["size"], item["mtime_ns"])
            for document in read_documents(file, text_field, limit=cap):
                texts.append(document.text)
                replaced.append(document.replaced)
    except DataError as error:
        texts.append("")
        replaced.append(False)
        errors.append(str(error))
    return pa.table({"text": pa.array(texts, type=pa.large_string()),
                     "replaced": pa.array(replaced, type=pa.bool_()),
                     "error": pa.array([None] * (len(texts) - len(errors)) + errors, type=pa.string())})


def _tokenize_batch(documents: pa.Table, tokenizer: str, val_fraction: float) -> pa.Table:
    """Ray task: token ids of each document (none for blank ones) and its split."""
    texts = documents["text"].to_pylist()
    blank = [not text or text.isspace() for text in texts]
    ids = load_tokenizer(tokenizer).encode_batch([text for text, empty in zip(texts, blank) if not empty])
    filled = iter(ids)
    empty = np.empty(0, dtype=np.int32)
    tokens = [empty if is_blank else next(filled) for is_blank in blank]
    lengths = np.fromiter((len(row) for row in tokens), dtype=np.int64, count=len(tokens))
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    values = np.concatenate(tokens) if tokens else empty
    return pa.table({
        "tokens": pa.LargeListArray.from_arrays(pa.array(offsets), pa.array(values, type=pa.int32())),
        "val": pa.array([_is_validation(text, val_fraction) for text in texts], type=pa.bool_()),
        "replaced": documents["replaced"],
        "error": documents["error"],
    })


def _is_validation(text: str, val_fraction: float) -> bool:
    """A document's split from a hash of its text: independent of order, the same for duplicates."""
    digest = hashlib.blake2b(text.encode("utf-8", "replace"), digest_size=8).digest()
    return int.from_bytes(digest, "big") < val_fraction * 2**64
