"""Turn a corpus into packed parquet shards with Ray Data.

    files (sorted) ─ Ray Data: read documents → tokenize + split (map_batches) ─► driver, in order:
    EOS after every document → cut rows of seq_len + 1 → fixed-size shards → manifest.json

Ray does the expensive part (reading, decoding, tokenizing) in parallel; the driver only
concatenates token arrays and writes shards. A mixture (`data.sources`) reads all its sources in
the same pipeline; the driver packs each source's rows apart (into a hidden spool directory),
then interleaves them by weight into the shards (raygrow.data.mixture).

With `preserve_order` the driver sees documents in file order, so the same config gives
byte-identical shards. Documents go to validation by a hash of their text, so the split never
depends on order or on which other documents are present.

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

from raygrow.config import DataConfig, RunConfig, SourceConfig
from raygrow import storage
from raygrow.data.manifest import EXHAUSTED_STOP, FORMAT_VERSION, Manifest, SourceShare
from raygrow.data.mixture import interleave, schedule
from raygrow.data.packed import ShardWriter
from raygrow.data.sources import (SourceFile, check_sources, first_files, read_documents, relabel,
                                  resolve_source)
from raygrow.data.tokenizer import Tokenizer, load_tokenizer, normalize_spec
from raygrow.errors import DataError

logger = logging.getLogger("raygrow.data")

BYTES_PER_BLOCK = 4 << 20  # source bytes per read task: enough work to hide task overhead
SPOOL = ".sources"  # a mixture's per-source rows while packing; removed before the manifest


@dataclass
class PlannedSource:
    """One source of the dataset: its config (text field resolved) and the files to read."""

    config: SourceConfig
    files: list[tuple[SourceFile, int | None]]  # (file, cap on documents needed from it)


@dataclass
class DatasetPlan:
    """Everything decided before reading: the files to read, the tokenizer, the output directory.
    A driver makes it once (`plan_dataset`): the corpus is listed and the tokenizer loaded once."""

    config: DataConfig
    sources: list[PlannedSource]  # data.source is one source
    tokenizer: Tokenizer
    directory: str


def plan_dataset(config: RunConfig) -> DatasetPlan:
    """Check the corpus and tokenizer (one line naming what is wrong, no Ray) and decide where
    the packed shards go."""
    data = config.data
    listed = []
    for index, source in enumerate(data.mixture):
        try:
            listed.append(resolve_source(source.source))
        except DataError as error:
            raise relabel(error, data, index) from None
    check_sources(data, listed)
    sources = [PlannedSource(source, first_files(files, data.max_documents))
               for source, files in zip(data.mixture, listed)]
    tokenizer = load_tokenizer(data.tokenizer)
    key_fields = {
        **_source_key(data, sources),
        "format": FORMAT_VERSION,
        "tokenizer": tokenizer.fingerprint,
        "seq_len": data.seq_len,
        "val_fraction": data.val_fraction,
        "max_documents": data.max_documents,
        "rows_per_shard": data.rows_per_shard,
    }
    digest = hashlib.sha256(json.dumps(key_fields, sort_keys=True).encode()).hexdigest()[:16]
    root = storage.canonical(config.dataset_root)
    return DatasetPlan(data, sources, tokenizer, f"{root}/{_slug(data)}-{digest}")


def _source_key(data: DataConfig, sources: list[PlannedSource]) -> dict:
    """The part of the dataset key that says where the text comes from: for `data.source` the
    fields it always had (so datasets and runs from before mixtures keep their key), for a
    mixture every source's spec, weight, text field and files, and the rule when one runs out."""
    def files(source: PlannedSource) -> list:
        return [(file.path, file.size, file.mtime_ns) for file, _ in source.files]

    if data.sources is None:
        return {"source": data.source, "files": files(sources[0]), "text_field": data.text_field}
    return {"mixture": [{"source": source.config.source, "weight": source.config.weight,
                         "text_field": source.config.text_field, "files": files(source)}
                        for source in sources],
            "exhausted": EXHAUSTED_STOP}


def _slug(data: DataConfig) -> str:
    """A readable prefix for the directory name, e.g. `stdlib-byte-128`, `mix-a+b-byte-128`."""
    if data.sources is None:  # as it always was: the dataset directories of old runs stay found
        source = data.source.rstrip("/").split("/")[-1] or "corpus"
    else:
        source = "mix-" + "+".join(_plain_name(source.source) for source in data.sources)
    tokenizer = data.tokenizer.rstrip("/").split("/")[-1] or "tokenizer"
    return re.sub(r"[^A-Za-z0-9._-]+", "_", f"{source}-{tokenizer}-{data.seq_len}").strip("._")[:60]


def _plain_name(source: str) -> str:
    """The last part of a source spec that is not a glob: `stdlib:email/*` → `stdlib:email`."""
    parts = [part for part in source.rstrip("/").split("/")
             if part and not any(char in part for char in storage.GLOB_CHARS)]
    return parts[-1] if parts else "corpus"


def dataset_dir(config: RunConfig) -> str:
    """Where `prepare` puts (or finds) the packed shards for this config: `<dataset_root>/<key>`.

    The key hashes everything that changes the rows: source and its file list (paths, sizes,
    mtimes), text field, tokenizer fingerprint, seq_len, val_fraction, max_documents, shard size;
    for a mixture every source with its weight and text field.
    """
    return plan_dataset(config).directory


def prepare(config: RunConfig, show_progress: bool = True,
            plan: DatasetPlan | None = None) -> Manifest:
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
    """Rename the finished temp directory into place; if another process won the race, use
    theirs."""
    if storage.exists(directory):
        with contextlib.suppress(DataError):
            return Manifest.load(directory)  # completed meanwhile by another process
        logger.warning("removing incomplete dataset directory %s (no valid manifest)", directory)
        storage.remove_tree(directory)
    try:
        storage.rename(temp, directory)
    except OSError as error:
        with contextlib.suppress(DataError):
            # another process published first: same config, same rows
            return Manifest.load(directory)
        raise DataError(f"cannot move the prepared dataset to {directory} ({error}); check that "
                        "the directory is writable") from None
    _log_prepared(directory, manifest)
    return manifest


# ---- the Ray Data pipeline ---------------------------------------------------------------------


@dataclass
class _SourceRows:
    """One source's packing state: its rows per split and what it gave."""

    writers: dict[str, ShardWriter]
    documents: int = 0
    replaced: int = 0
    records: int = 0  # documents read, blank ones too (what max_documents counts)


def _pack(plan: DatasetPlan, temp: str, show_progress: bool) -> Manifest:
    data = plan.config
    mixed = len(plan.sources) > 1
    directories = [f"{temp}/{SPOOL}/{index}" if mixed else temp
                   for index in range(len(plan.sources))]
    for directory in directories if mixed else ():
        storage.make_dirs(directory)
    packing = [_SourceRows({split: ShardWriter(directory, split, data.seq_len, data.rows_per_shard)
                            for split in ("train", "val")})
               for directory in directories]
    logger.info("preparing %s (%d files) with tokenizer %s", _described(plan),
                sum(len(source.files) for source in plan.sources), data.tokenizer)
    for batch in _tokenized_batches(plan, show_progress):
        batch = _within_cap(batch, packing, data.max_documents)  # file caps over-read jsonl
        failed = batch.filter(pc.invert(pc.is_null(batch["error"])))
        if failed.num_rows:
            raise relabel(DataError(failed["error"][0].as_py()), data, failed["source"][0].as_py())
        used = batch.filter(pc.greater(pc.list_value_length(batch["tokens"]), 0))
        for index in pc.unique(used["source"]).to_pylist():
            documents = used.filter(pc.equal(used["source"], index))
            _add(packing[index], documents, plan.tokenizer.eos_id)
        if data.max_documents is not None and all(rows.records >= data.max_documents
                                                  for rows in packing):
            break
    for index, rows in enumerate(packing):
        for writer in rows.writers.values():
            writer.finish()
        _check_not_empty(plan, index, rows)
    splits = _mixed(plan, packing, temp) if mixed else {
        split: (writer, [writer.rows]) for split, writer in packing[0].writers.items()}
    return _manifest(plan, packing, splits)


def _described(plan: DatasetPlan) -> str:
    return " + ".join(source.config.source for source in plan.sources)


def _within_cap(batch: pa.Table, packing: list[_SourceRows], cap: int | None) -> pa.Table:
    """The documents of `batch` inside each source's first `cap` documents; counts them."""
    sources = batch["source"].to_numpy()
    keep = np.ones(len(sources), dtype=bool)
    for index in np.unique(sources):
        rows = np.flatnonzero(sources == index)
        allowed = len(rows) if cap is None else max(0, cap - packing[index].records)
        keep[rows[allowed:]] = False
        packing[index].records += min(allowed, len(rows))
    return batch if keep.all() else batch.filter(pa.array(keep))


def _add(rows: _SourceRows, documents: pa.Table, eos_id: int) -> None:
    rows.documents += documents.num_rows
    rows.replaced += pc.sum(documents["replaced"]).as_py() or 0
    for split, is_val in (("train", False), ("val", True)):
        chosen = documents.filter(pc.equal(documents["val"], is_val))
        rows.writers[split].add(_with_eos(chosen["tokens"], eos_id))


Split = tuple[ShardWriter, list[int]]  # a split's shards, and its rows from each source


def _mixed(plan: DatasetPlan, packing: list[_SourceRows], temp: str) -> dict[str, Split]:
    """Interleave the sources' spooled rows by weight into the dataset's shards, per split."""
    data = plan.config
    weights = [source.config.weight for source in plan.sources]
    mixed = {}
    for split in ("train", "val"):
        packed = [rows.writers[split] for rows in packing]
        order = schedule(weights, [writer.rows for writer in packed])
        writer = ShardWriter(temp, split, data.seq_len, data.rows_per_shard)
        interleave(packed, order, writer)
        used = np.bincount(order, minlength=len(packed)).tolist()
        mixed[split] = (writer, used)
        ran_out = [index for index, writer in enumerate(packed) if used[index] == writer.rows]
        left = sum(writer.rows for writer in packed) - len(order)
        if left:
            logger.warning("mixture (%s rows): %s (%s) ran out first; %d packed rows of the other "
                           "sources are left out", split, f"data.sources[{ran_out[0]}]",
                           plan.sources[ran_out[0]].config.source, left)
    storage.remove_tree(f"{temp}/{SPOOL}")
    return mixed


def _manifest(plan: DatasetPlan, packing: list[_SourceRows], splits: dict[str, Split]) -> Manifest:
    data, tokenizer = plan.config, plan.tokenizer
    (train, _), (val, _) = splits["train"], splits["val"]
    documents, replaced = (sum(getattr(rows, name) for rows in packing)
                           for name in ("documents", "replaced"))
    if replaced:
        logger.warning("%d of %d documents in %s had bytes that are not UTF-8; they were replaced "
                       "with U+FFFD", replaced, documents, _described(plan))
    return Manifest(
        seq_len=data.seq_len, tokenizer=normalize_spec(data.tokenizer),
        tokenizer_fingerprint=tokenizer.fingerprint, vocab_size=tokenizer.vocab_size,
        eos_id=tokenizer.eos_id, train_shards=train.shards, train_shard_rows=train.shard_rows,
        val_shards=val.shards, val_shard_rows=val.shard_rows, train_rows=train.rows,
        val_rows=val.rows, train_tokens=train.rows * (data.seq_len + 1), documents=documents,
        replaced_documents=replaced, source=data.source or _described(plan),
        sources=_shares(plan, packing, splits), exhausted=EXHAUSTED_STOP)


def _shares(plan: DatasetPlan, packing: list[_SourceRows], splits: dict[str, Split]
            ) -> list[SourceShare]:
    weights = [source.config.weight for source in plan.sources]
    (train, train_used), (_, val_used) = splits["train"], splits["val"]
    return [SourceShare(
        source=source.config.source, text_field=source.config.text_field, weight=weight,
        target=weight / sum(weights), realised=train_used[index] / train.rows,
        documents=rows.documents, train_rows=train_used[index],
        train_tokens=train_used[index] * (plan.config.seq_len + 1), val_rows=val_used[index],
        packed_train_rows=rows.writers["train"].rows)
        for index, (source, weight, rows) in enumerate(zip(plan.sources, weights, packing))]


def _with_eos(tokens: pa.ChunkedArray, eos_id: int) -> np.ndarray:
    """The documents' tokens back to back, each followed by EOS."""
    documents = tokens.combine_chunks()
    offsets = documents.offsets.to_numpy()
    flat = documents.flatten().to_numpy(zero_copy_only=False)
    return np.insert(flat, offsets[1:] - offsets[0], eos_id)


def _check_not_empty(plan: DatasetPlan, index: int, rows: _SourceRows) -> None:
    data = plan.config
    field, source = data.source_field(index), plan.sources[index].config.source
    if rows.documents == 0:
        raise DataError(f"{field}: {source} holds no text (every document is empty or "
                        f"blank); point {field} at a real corpus")
    train, val = rows.writers["train"].rows, rows.writers["val"].rows
    if train == 0:
        raise DataError(f"{field}: {source} gives no training row of {data.seq_len + 1} "
                        f"tokens ({rows.documents} documents); add text or lower data.seq_len")
    if val == 0:
        raise DataError(f"{field}: {source} gives no validation row of {data.seq_len + 1} "
                        f"tokens ({rows.documents} documents, val_fraction {data.val_fraction}); "
                        "raise data.val_fraction, add documents or lower data.seq_len")


def _tokenized_batches(plan: DatasetPlan, show_progress: bool) -> Iterator[pa.Table]:
    """Tokenized documents in file order, as pyarrow tables (tokens, val, replaced, error)."""
    import ray

    if not ray.is_initialized():
        ray.init()
    data = plan.config
    items = [{"path": file.path, "kind": file.kind, "size": file.size, "mtime_ns": file.mtime_ns,
              "cap": -1 if cap is None else cap, "source": index,
              "text_field": source.config.text_field}
             for index, source in enumerate(plan.sources) for file, cap in source.files]
    total_bytes = sum(item["size"] for item in items)
    blocks = max(1, min(len(items), math.ceil(total_bytes / BYTES_PER_BLOCK)))
    with _data_context(show_progress):
        dataset = (ray.data.from_items(items, override_num_blocks=blocks)
                   .map_batches(_read_batch, batch_format="pyarrow", batch_size=None,
                                fn_kwargs={"s3": storage.s3_settings()})
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


def _read_batch(files: pa.Table, s3: storage.S3Settings) -> pa.Table:
    """Ray task: the documents of a block of files, in order, each with its source's index.

    A malformed file ends the block with a row carrying the DataError's message: raised inside
    the task, Ray would wrap it into a multi-line traceback; as data, the driver raises it as the
    one-line error it is, at the right place in document order.
    """
    storage.configure_s3(s3.endpoint_url, s3.region)  # this task's process has its own settings
    texts, replaced, sources, errors = [], [], [], []
    item = None
    try:
        for item in files.to_pylist():
            cap = None if item["cap"] < 0 else item["cap"]
            file = SourceFile(item["path"], item["kind"], item["size"], item["mtime_ns"])
            for document in read_documents(file, item["text_field"], limit=cap):
                texts.append(document.text)
                replaced.append(document.replaced)
                sources.append(item["source"])
    except DataError as error:
        texts.append("")
        replaced.append(False)
        sources.append(item["source"])
        errors.append(str(error))
    return pa.table({"text": pa.array(texts, type=pa.large_string()),
                     "replaced": pa.array(replaced, type=pa.bool_()),
                     "source": pa.array(sources, type=pa.int32()),
                     "error": pa.array([None] * (len(texts) - len(errors)) + errors,
                                       type=pa.string())})


def _tokenize_batch(documents: pa.Table, tokenizer: str, val_fraction: float) -> pa.Table:
    """Ray task: token ids of each document (none for blank ones) and its split."""
    texts = documents["text"].to_pylist()
    blank = [not text or text.isspace() for text in texts]
    ids = load_tokenizer(tokenizer).encode_batch([text for text, empty in zip(texts, blank)
                                                  if not empty])
    filled = iter(ids)
    empty = np.empty(0, dtype=np.int32)
    tokens = [empty if is_blank else next(filled) for is_blank in blank]
    lengths = np.fromiter((len(row) for row in tokens), dtype=np.int64, count=len(tokens))
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    values = np.concatenate(tokens) if tokens else empty
    return pa.table({
        "tokens": pa.LargeListArray.from_arrays(pa.array(offsets),
                                                pa.array(values, type=pa.int32())),
        "val": pa.array([_is_validation(text, val_fraction) for text in texts], type=pa.bool_()),
        "replaced": documents["replaced"],
        "source": documents["source"],
        "error": documents["error"],
    })


def _is_validation(text: str, val_fraction: float) -> bool:
    """A document's split from a hash of its text: independent of order, the same for duplicates."""
    digest = hashlib.blake2b(text.encode("utf-8", "replace"), digest_size=8).digest()
    return int.from_bytes(digest, "big") < val_fraction * 2**64
