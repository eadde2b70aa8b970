"""File access for everything a run reads and writes: local paths and `s3://bucket/prefix` URIs.

Every path raygrow touches (corpus, packed shards, run directory, checkpoints, exports) goes
through `resolve`, which picks a pyarrow filesystem for it: the local one, or S3 through s3fs
(wrapped for pyarrow, the form Ray Train's `storage_filesystem` and Ray Data take). Callers
never branch on the scheme; the differences an object store has live here:
  - no directories: `make_dirs` does nothing (and so never creates a bucket);
  - no rename and no append: a directory is published by uploading it with its completion
    marker last (`staged_dir`), an append rewrites the object;
  - no local path: `local_copy` downloads a directory for readers that need files.

S3 credentials come from the standard AWS chain of each process (environment, profile, instance
role) and are never passed, stored or printed by raygrow; only the endpoint and region are
settings (`configure_s3`, from the run config's `s3` section, else AWS_ENDPOINT_URL).
"""

from __future__ import annotations

import contextlib
import functools
import glob as globlib
import hashlib
import logging
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow.fs as pafs

from raygrow.errors import DataError

GLOB_CHARS = "*?["
S3 = "s3://"
FileType = pafs.FileType

# botocore says at INFO where it found credentials, once per process: noise in every worker's log
# and in front of the CLI's one-line errors.
for _name in ("botocore.credentials", "aiobotocore.credentials"):
    logging.getLogger(_name).setLevel(logging.WARNING)


@dataclass(frozen=True)
class S3Settings:
    endpoint_url: str | None = None  # None: AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL, else AWS itself
    region: str | None = None  # None: the AWS chain's (AWS_REGION, AWS_DEFAULT_REGION, profile)

    @property
    def endpoint(self) -> str | None:
        return (self.endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3")
                or os.environ.get("AWS_ENDPOINT_URL") or None)


_settings = S3Settings()


def configure_s3(endpoint_url: str | None = None, region: str | None = None) -> None:
    """Set this process's S3 endpoint and region (each process of a run calls it with the run
    config's `s3` section: driver, coordinator, Train workers, Data tasks)."""
    global _settings
    _settings = S3Settings(endpoint_url, region)


def s3_settings() -> S3Settings:
    return _settings


# ---- paths ---------------------------------------------------------------------------------


def is_remote(path: str | Path) -> bool:
    return "://" in str(path)


def resolve(path: str | Path) -> tuple[pafs.FileSystem, str]:
    """The filesystem that holds `path` and the path as that filesystem names it."""
    path = str(path)
    if not is_remote(path):
        return pafs.LocalFileSystem(), os.path.abspath(os.path.expanduser(path))
    if not path.startswith(S3):
        scheme = path.split("://", 1)[0]
        raise DataError(f"{path}: {scheme}:// paths are not supported; use a local path or "
                        "s3://bucket/prefix")
    return _s3_filesystem(_settings.endpoint, _settings.region), path[len(S3):].rstrip("/")


def canonical(path: str | Path) -> str:
    """One spelling per location: absolute local paths, `s3://bucket/key` without a trailing /."""
    _, inner = resolve(path)
    return S3 + inner if is_remote(path) else inner


def join(base: str | Path, *names: str) -> str:
    return "/".join([str(base).rstrip("/"), *names])


def parent(path: str | Path) -> str:
    if is_remote(path):
        return str(path).rstrip("/").rsplit("/", 1)[0]
    return os.path.dirname(os.path.abspath(os.path.expanduser(str(path))))


def base_name(path: str | Path) -> str:
    return str(path).rstrip("/").rsplit("/", 1)[-1]


def bucket_and_key(path: str) -> tuple[str, str]:
    """`s3://bucket/a/b` → ("bucket", "a/b")."""
    bucket, _, key = path[len(S3):].partition("/")
    return bucket, key.strip("/")


class _S3Handler(pafs.FSSpecHandler):
    """s3fs for pyarrow, with S3's LastModified as the file time (a changed object changes the
    dataset key even when its size stays the same)."""

    @staticmethod
    def _create_file_info(path, info):
        return pafs.FSSpecHandler._create_file_info(path,
                                                    {**info, "mtime": info.get("LastModified")})


@functools.lru_cache(maxsize=4)
def _s3_filesystem(endpoint: str | None, region: str | None) -> pafs.PyFileSystem:
    return pafs.PyFileSystem(_S3Handler(_s3fs(endpoint, region)))


@functools.lru_cache(maxsize=4)
def _s3fs(endpoint: str | None, region: str | None):
    import s3fs

    # No listing cache: other processes (workers, the coordinator) write the same prefixes, and a
    # stale listing would hide a new checkpoint. No keys either: botocore's chain finds them.
    return s3fs.S3FileSystem(endpoint_url=endpoint,
                             client_kwargs={"region_name": region} if region else {},
                             use_listings_cache=False, skip_instance_cache=True)


def ray_storage(path: str) -> tuple[str, pafs.FileSystem | None]:
    """(storage_path, storage_filesystem) for Ray Train's RunConfig: a local path as it is, an S3
    URI as `bucket/key` with the configured filesystem (Ray's own S3 client knows no endpoint)."""
    filesystem, inner = resolve(path)
    return (inner, filesystem) if is_remote(path) else (inner, None)


# ---- metadata ------------------------------------------------------------------------------


def _named(entry: pafs.FileInfo, like: str) -> pafs.FileInfo:
    """An entry with the path spelled as the caller spells it (s3:// URIs stay URIs)."""
    if not is_remote(like):
        return entry
    return pafs.FileInfo(S3 + entry.path.lstrip("/"), entry.type, mtime_ns=entry.mtime_ns,
                         size=entry.size)


def info(path: str | Path) -> pafs.FileInfo:
    filesystem, inner = resolve(path)
    return _named(filesystem.get_file_info(inner), str(path))


def exists(path: str | Path) -> bool:
    return info(path).type != pafs.FileType.NotFound


def is_dir(path: str | Path) -> bool:
    return info(path).type == pafs.FileType.Directory


def list_files(directory: str | Path, recursive: bool = True) -> list[pafs.FileInfo]:
    """Every file under `directory`, sorted by path (with `recursive=False`: its entries,
    folders too). A missing directory has none."""
    filesystem, inner = resolve(directory)
    found = filesystem.get_file_info(pafs.FileSelector(inner, recursive=recursive,
                                                       allow_not_found=True))
    keep = (_named(entry, str(directory)) for entry in found
            if entry.type == pafs.FileType.File or not recursive)
    return sorted(keep, key=lambda entry: entry.path)


def glob(pattern: str) -> list[str]:
    """Paths matching a glob pattern (`**` spans directories), sorted."""
    if is_remote(pattern):
        resolve(pattern)  # refuses other schemes
        matches = _s3fs(_settings.endpoint, _settings.region).glob(pattern[len(S3):])
        return sorted(S3 + match for match in matches)
    _, inner = resolve(pattern)
    return sorted(globlib.glob(inner, recursive=True))


# ---- reading and writing -------------------------------------------------------------------


def read_bytes(path: str | Path) -> bytes:
    """The whole file; on S3 in one GET, so an object replaced while it is read (a metrics log
    another process rewrites) is read as one version or the other, never refused half-way."""
    filesystem, inner = resolve(path)
    if is_remote(path):
        return _s3fs(_settings.endpoint, _settings.region).cat_file(inner)
    with filesystem.open_input_stream(inner) as stream:
        return stream.read()


def iter_chunks(path: str | Path, chunk_bytes: int = 1 << 20) -> Iterator[bytes]:
    filesystem, inner = resolve(path)
    with filesystem.open_input_stream(inner) as stream:
        while chunk := stream.read(chunk_bytes):
            yield chunk


def iter_lines(path: str | Path, chunk_bytes: int = 1 << 20) -> Iterator[bytes]:
    """The lines of a file without their newline, read in chunks (stops early if the caller
    does)."""
    pending = b""
    for chunk in iter_chunks(path, chunk_bytes):
        lines = (pending + chunk).split(b"\n")
        pending = lines.pop()
        yield from lines
    if pending:
        yield pending


def sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    for chunk in iter_chunks(path):
        digest.update(chunk)
    return digest.hexdigest()


def write_bytes(path: str | Path, data: bytes) -> None:
    """Replace the file at `path` atomically: a reader sees the old or the new contents (locally
    through a temp file and a rename; an S3 PUT is atomic by itself)."""
    with writer(path) as stream:
        stream.write(data)


@contextlib.contextmanager
def writer(path: str | Path) -> Iterator[pafs.NativeFile]:
    """A stream that replaces the file at `path` when the block ends without an error: locally a
    temp file renamed into place, on S3 an upload that completes (and so appears) only at the
    end."""
    filesystem, inner = resolve(path)
    target = inner if is_remote(path) else f"{inner}.tmp-{uuid.uuid4().hex[:8]}"
    if target != inner:
        filesystem.create_dir(os.path.dirname(inner), recursive=True)
    try:
        with filesystem.open_output_stream(target) as stream:
            yield stream
    except BaseException:
        if target != inner:
            with contextlib.suppress(OSError):
                filesystem.delete_file(target)
        raise
    if target != inner:
        filesystem.move(target, inner)


def copy_file(source: str | Path, destination: str | Path) -> None:
    """Copy one file (a hard link where both are local and the filesystem allows)."""
    if not is_remote(source) and not is_remote(destination):
        _, inner_destination = resolve(destination)
        os.makedirs(os.path.dirname(inner_destination), exist_ok=True)
        with contextlib.suppress(OSError):
            os.link(resolve(source)[1], inner_destination)
            return
    source_fs, inner_source = resolve(source)
    destination_fs, inner_destination = resolve(destination)
    pafs.copy_files(inner_source, inner_destination, source_filesystem=source_fs,
                    destination_filesystem=destination_fs)


def append_bytes(path: str | Path, data: bytes) -> None:
    """Append to a file (creating it). An object store cannot append: the object is rewritten."""
    filesystem, inner = resolve(path)
    if is_remote(path):
        old = read_bytes(path) if exists(path) else b""
        write_bytes(path, old + data)
        return
    filesystem.create_dir(os.path.dirname(inner), recursive=True)
    with filesystem.open_append_stream(inner) as stream:
        stream.write(data)


def make_dirs(path: str | Path) -> None:
    """Create a directory and its parents. On S3 there are no directories: nothing to do (and a
    missing bucket is never created behind the user's back)."""
    if is_remote(path):
        resolve(path)
        return
    filesystem, inner = resolve(path)
    filesystem.create_dir(inner, recursive=True)


def remove_tree(path: str | Path) -> None:
    """Delete a directory and everything in it; a missing directory is fine."""
    filesystem, inner = resolve(path)
    if filesystem.get_file_info(inner).type != pafs.FileType.NotFound:
        filesystem.delete_dir(inner)


def remove_file(path: str | Path) -> None:
    """Delete one file; a missing file is fine."""
    filesystem, inner = resolve(path)
    with contextlib.suppress(FileNotFoundError):
        filesystem.delete_file(inner)


def rename(source: str, destination: str) -> None:
    """Move `source` to `destination`; fails if `destination` is a non-empty directory. Atomic
    locally; on S3 a copy of every object and a delete (callers keep a completion marker)."""
    filesystem, inner_source = resolve(source)
    _, inner_destination = resolve(destination)
    if not is_remote(source):
        filesystem.move(inner_source, inner_destination)
        return
    if list_files(destination):
        raise OSError(f"{destination} is not empty")
    for entry in list_files(source) or [info(source)]:
        name = entry.path[len(source.rstrip("/")):]
        filesystem.copy_file(f"{inner_source}{name}", f"{inner_destination}{name}")
    remove_tree(source) if is_dir(source) else filesystem.delete_file(inner_source)


def upload_dir(local: str | Path, destination: str, last: str | None = None) -> None:
    """Copy a local directory's files to `destination`; the file named `last` (a completion
    marker) goes after every other, so a reader that sees it sees all of them."""
    filesystem, inner = resolve(destination)
    names = sorted(str(path.relative_to(local)) for path in Path(local).rglob("*")
                   if path.is_file())
    for name in sorted(names, key=lambda name: name == last):
        pafs.copy_files(str(Path(local) / name), f"{inner}/{name}",
                        source_filesystem=pafs.LocalFileSystem(), destination_filesystem=filesystem)


def contained(name: str, where: str | Path) -> str:
    """`name` (an object key below `where`, or a file name from a manifest) if it stays inside its
    directory; DataError otherwise. An object store allows keys like `a/../../etc/x`, which a
    download or a read must never turn into a path outside its destination."""
    parts = name.replace("\\", "/").split("/")
    if not name or name.startswith("/") or any(part in ("", ".", "..") for part in parts):
        raise DataError(f"{where}: refusing the object {name!r}: its name leaves its directory "
                        "(absolute, empty or '..' parts); remove it from the store")
    return name


@contextlib.contextmanager
def local_copy(directory: str | Path) -> Iterator[Path]:
    """A local directory with the contents of `directory`: the directory itself when it is local,
    else a temporary download, removed afterwards."""
    if not is_remote(directory):
        yield Path(directory)
        return
    filesystem, inner = resolve(directory)
    with tempfile.TemporaryDirectory(prefix="raygrow-download-") as temp:
        for entry in list_files(directory):
            name = contained(entry.path[len(str(directory).rstrip("/")) + 1:], directory)
            (Path(temp) / name).parent.mkdir(parents=True, exist_ok=True)
            pafs.copy_files(f"{inner}/{name}", str(Path(temp) / name), source_filesystem=filesystem,
                            destination_filesystem=pafs.LocalFileSystem())
        yield Path(temp)


@contextlib.contextmanager
def staged_dir(destination: str | Path, last: str | None = None) -> Iterator[Path]:
    """Write a directory in a local staging folder, then put it in place of `destination`.

    Locally the staging folder is a sibling and the swap is a rename (atomic). On S3 the old
    contents are deleted and the new ones uploaded with `last` (a completion marker) at the
    end; readers rely on that marker. If the block raises, `destination` is left untouched.
    """
    destination = str(destination)
    if is_remote(destination):
        with tempfile.TemporaryDirectory(prefix="raygrow-stage-") as temp:
            yield Path(temp)
            remove_tree(destination)
            upload_dir(temp, destination, last=last)
        return
    target = Path(destination)
    temp = target.with_name(f"{target.name}.tmp-{os.getpid()}")
    shutil.rmtree(temp, ignore_errors=True)
    temp.mkdir(parents=True)
    try:
        yield temp
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    old = target.with_name(f"{target.name}.old-{os.getpid()}")
    if target.exists():
        os.replace(target, old)
    os.replace(temp, target)
    shutil.rmtree(old, ignore_errors=True)


# ---- checking S3 before a run ------------------------------------------------------------

# botocore error codes → what the user should do. The messages are built from codes only: an
# S3 error text can quote the access key id, and nothing of the credentials may reach a log.
_DENIED = ("InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken",
           "InvalidClientTokenId", "UnrecognizedClientException", "AuthorizationHeaderMalformed")
_CREDENTIALS_HELP = ("check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN), "
                     "AWS_PROFILE or the instance role")


def probe(path: str, setting: str, write: bool) -> None:
    """Check that `path` (s3://…) can be read, and written if `write`, before any run starts:
    endpoint reachable, credentials found and accepted, bucket present. A write probe puts and
    deletes one small object. Raises DataError: one line naming `setting`, the path and the fix."""
    from botocore.exceptions import (BotoCoreError, ClientError, EndpointConnectionError,
                                     NoCredentialsError)

    resolve(path)  # refuses schemes other than s3://
    bucket, key = bucket_and_key(path)
    endpoint = _settings.endpoint
    where = f"endpoint {endpoint} (s3.endpoint_url or AWS_ENDPOINT_URL)" if endpoint else "AWS S3"
    if not bucket:
        raise DataError(f"{setting}: {path} names no bucket; write s3://bucket/prefix")
    client = _probe_client(endpoint)
    try:
        client.list_objects_v2(Bucket=bucket, Prefix=key, MaxKeys=1)
        if write:
            marker = f"{key}/.raygrow-write-probe-{uuid.uuid4().hex[:8]}".lstrip("/")
            client.put_object(Bucket=bucket, Key=marker, Body=b"")
            client.delete_object(Bucket=bucket, Key=marker)
    except NoCredentialsError:
        raise DataError(f"{setting}: {path}: no AWS credentials found; set AWS_ACCESS_KEY_ID and "
                        "AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or run with an instance "
                        "role") from None
    except EndpointConnectionError:
        raise DataError(f"{setting}: {path}: cannot connect to {where}; check the URL and that "
                        "the server is up") from None
    except ClientError as error:
        code = str(error.response.get("Error", {}).get("Code", "unknown"))
        raise DataError(f"{setting}: {path}: {_explain(code, bucket, where, write)}") from None
    except BotoCoreError as error:  # e.g. an endpoint URL that is not a URL, a TLS failure
        raise DataError(f"{setting}: {path}: cannot use {where} ({type(error).__name__}); check "
                        "the endpoint") from None


def _explain(code: str, bucket: str, where: str, write: bool) -> str:
    if code in ("NoSuchBucket", "404"):
        return f"bucket {bucket} does not exist at {where}; create it or fix the path"
    if code in _DENIED:
        return f"{where} refused the AWS credentials ({code}); {_CREDENTIALS_HELP}"
    if code in ("AccessDenied", "403", "AllAccessDisabled"):
        action = "read and write" if write else "read"
        return (f"access denied ({code}): the AWS credentials may not {action} bucket {bucket}; "
                f"grant access or {_CREDENTIALS_HELP}")
    return f"{where} answered {code}; check the bucket, endpoint and credentials"


def _probe_client(endpoint: str | None):
    """A plain botocore client with short timeouts and no retries: a check must answer in
    seconds."""
    import botocore.session
    from botocore.config import Config

    config = Config(connect_timeout=5, read_timeout=10,
                    retries={"max_attempts": 1, "mode": "standard"})
    return botocore.session.get_session().create_client("s3", endpoint_url=endpoint,
                                                        region_name=_settings.region, config=config)
