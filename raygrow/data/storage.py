"""File access for sources and packed datasets, through one path resolver.

Every path raygrow's data code touches goes through `resolve`, which picks a pyarrow filesystem
for it. Only local paths are supported today; an object store (s3://) plugs in here later without
changing the callers, which is why nothing below calls `open` or `os` directly.
"""

from __future__ import annotations

import glob as globlib
import os
from collections.abc import Iterator

import pyarrow.fs as pafs

from raygrow.errors import DataError

GLOB_CHARS = "*?["


def resolve(path: str) -> tuple[pafs.FileSystem, str]:
    """The filesystem that holds `path` and the path as that filesystem names it."""
    if "://" in path:
        scheme = path.split("://", 1)[0]
        raise DataError(f"{path}: {scheme}:// paths are not supported yet; use a local path")
    return pafs.LocalFileSystem(), os.path.abspath(os.path.expanduser(path))


FileType = pafs.FileType


def info(path: str) -> pafs.FileInfo:
    filesystem, local = resolve(path)
    return filesystem.get_file_info(local)


def exists(path: str) -> bool:
    return info(path).type != pafs.FileType.NotFound


def is_dir(path: str) -> bool:
    return info(path).type == pafs.FileType.Directory


def list_files(directory: str, recursive: bool = True) -> list[pafs.FileInfo]:
    """Every file under `directory`, sorted by path (with `recursive=False`: its entries, folders too)."""
    filesystem, local = resolve(directory)
    found = filesystem.get_file_info(pafs.FileSelector(local, recursive=recursive))
    keep = (entry for entry in found if entry.type == pafs.FileType.File or not recursive)
    return sorted(keep, key=lambda entry: entry.path)


def glob(pattern: str) -> list[str]:
    """Paths matching a glob pattern (`**` spans directories), sorted."""
    _, local = resolve(pattern)
    return sorted(globlib.glob(local, recursive=True))


def read_bytes(path: str) -> bytes:
    filesystem, local = resolve(path)
    with filesystem.open_input_stream(local) as stream:
        return stream.read()


def iter_lines(path: str, chunk_bytes: int = 1 << 20) -> Iterator[bytes]:
    """The lines of a file without their newline, read in chunks (stops early if the caller does)."""
    filesystem, local = resolve(path)
    with filesystem.open_input_stream(local) as stream:
        pending = b""
        while chunk := stream.read(chunk_bytes):
            lines = (pending + chunk).split(b"\n")
            pending = lines.pop()
            yield from lines
        if pending:
            yield pending


def write_bytes(path: str, data: bytes) -> None:
    filesystem, local = resolve(path)
    with filesystem.open_output_stream(local) as stream:
        stream.write(data)


def make_dirs(path: str) -> None:
    filesystem, local = resolve(path)
    filesystem.create_dir(local, recursive=True)


def remove_tree(path: str) -> None:
    """Delete a directory and everything in it; a missing directory is fine."""
    filesystem, local = resolve(path)
    if filesystem.get_file_info(local).type != pafs.FileType.NotFound:
        filesystem.delete_dir(local)


def rename(source: str, destination: str) -> None:
    """Move `source` to `destination`; fails if `destination` is a non-empty directory."""
    filesystem, local_source = resolve(source)
    _, local_destination = resolve(destination)
    filesystem.move(local_source, local_destination)
