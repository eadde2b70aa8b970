"""Each version's documents as a corpus of its own, packed by the ordinary prepare pipeline.

A version's documents (a source, or a slice of one) are written once to
`<dataset_root>/versions/<key>/docs.jsonl` (key: a hash of the source's file list, the text field
and the slice), so the Ray Data pipeline packs it like any corpus and reuses the shards on every
later run. "Versions 1..k together" (from_scratch's data, and the common validation set: versions
1..n) is a directory holding those files in version order. Validation documents are chosen by a
hash of their text, so a version's held-out documents are held out of every union too.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from itertools import islice

from raygrow import storage
from raygrow.config import RunConfig
from raygrow.data import check_sources, dataset_dir, prepare
from raygrow.data.sources import first_files, read_documents, resolve_source
from raygrow.errors import ConfigError, DataError
from raygrow.config import VersionSpec

TEXT_FIELD = "text"  # the field the materialised .jsonl files hold their documents in
TOGETHER_MARKER = "complete.json"  # not a corpus file (.json): sources read .txt/.jsonl/.parquet


@dataclass
class VersionData:
    """Prepared datasets: per version its own, and versions 0..k together."""

    own: list[str]  # dataset directory of version k's documents
    together: list[str]  # dataset directory of versions 0..k (together[0] == own[0])
    steps: list[int]  # training steps of version k on its own data

    def of(self, index: int, cumulative: bool) -> str:
        return self.together[index] if cumulative else self.own[index]


def _documents(run: RunConfig, spec: VersionSpec, limit: int | None = None):
    """The version's documents in order (a slice skips the ones before it); at most `limit`."""
    files = resolve_source((spec.source or run.data.source))
    start = spec.documents.start if spec.documents else 0
    end = spec.documents.end if spec.documents else None
    stop = end if limit is None else min(x for x in (end, start + limit) if x is not None)
    documents = (document for file, cap in first_files(files, stop)
                 for document in read_documents(file, run.data.text_field, limit=cap))
    return islice(documents, start, stop)


def check_version_sources(run: RunConfig) -> None:
    """Before any cluster work: every version's source is usable and its slice is not empty."""
    for index, spec in enumerate(run.versions.data):
        where = f"versions.data[{index}]"
        source = (spec.source or run.data.source)
        try:
            check_sources(dataclasses.replace(run.data, source=source, max_documents=None))
        except DataError as error:
            raise DataError(f"{where}: {error}") from None
        if spec.documents and spec.documents.start > 0 and next(_documents(run, spec,
                                                                           limit=1), None) is None:
            raise ConfigError(f"{where}.documents",
                              f"starts at document {spec.documents.start}, past the last "
                              f"document of {source}; a version needs at least one document")


def _key(run: RunConfig, spec: VersionSpec) -> str:
    files = resolve_source((spec.source or run.data.source))
    fields = {"source": (spec.source or run.data.source), "text_field": run.data.text_field,
              "files": [(f.path, f.size, f.mtime_ns) for f in files],
              "documents": dataclasses.asdict(spec.documents) if spec.documents else None}
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]


def _materialise(run: RunConfig, spec: VersionSpec) -> str:
    """The version's documents as `docs.jsonl` (written once, atomically; local or s3://)."""
    path = storage.join(run.dataset_root, "versions", _key(run, spec), "docs.jsonl")
    if storage.exists(path):
        return path
    with storage.writer(path) as stream:
        for document in _documents(run, spec):
            stream.write((json.dumps({TEXT_FIELD: document.text}) + "\n").encode())
    return path


def _together(files: list[str], root: str) -> str:
    """A directory source holding `files` in order (hard links where the filesystem allows),
    complete once its marker is written (written last: a half-copied directory is redone)."""
    key = hashlib.sha256("\n".join(files).encode()).hexdigest()[:16]
    directory = storage.join(root, "versions", f"together-{key}")
    marker = storage.join(directory, TOGETHER_MARKER)
    if storage.exists(marker):
        return directory
    storage.remove_tree(directory)
    for number, file in enumerate(files):
        # sorted = version order
        storage.copy_file(file, storage.join(directory, f"v{number + 1:04d}.jsonl"))
    storage.write_bytes(marker, json.dumps({"files": files}).encode())
    return directory


def _corpus_config(run: RunConfig, source: str) -> RunConfig:
    data = dataclasses.replace(run.data, source=str(source), text_field=TEXT_FIELD,
                               max_documents=None,
                               cache_dir=run.dataset_root)
    return dataclasses.replace(run, data=data, versions=None)


def prepare_versions(run: RunConfig, show_progress: bool = True) -> VersionData:
    """Pack every version and every union of versions 0..k; steps per version. DataError names the
    version whose data cannot train a single step."""
    files = [_materialise(run, spec) for spec in run.versions.data]
    own, together, steps = [], [], []
    for index, (spec, file) in enumerate(zip(run.versions.data, files)):
        config = _corpus_config(run, file)
        try:
            manifest = prepare(config, show_progress=show_progress)
        except DataError as error:
            raise DataError(f"versions.data[{index}]: {error}") from None
        own.append(dataset_dir(config))
        count = (spec.tokens // run.train.batch_tokens if spec.tokens
                 else manifest.train_rows // run.batch_rows)
        if count < 1:
            raise DataError(f"versions.data[{index}]: {manifest.train_rows} training rows are less "
                            f"than one batch ({run.batch_rows} rows); add documents or lower "
                            "train.batch_tokens")
        steps.append(count)
        if index == 0:
            together.append(own[0])
        else:
            union = _corpus_config(run, _together(files[:index + 1], run.dataset_root))
            prepare(union, show_progress=show_progress)
            together.append(dataset_dir(union))
    return VersionData(own, together, steps)
