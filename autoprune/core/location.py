"""Where runs live: a local or shared directory, or a URL of a filesystem pyarrow understands
(``s3://bucket/prefix``, ``gs://…``, ``hdfs://…``; other schemes through fsspec when its package
for them is installed), as Ray Tune's ``storage_path`` does.

A URL's credentials and endpoint come from the usual places (``AWS_ACCESS_KEY_ID``,
``AWS_ENDPOINT_URL``, ``~/.aws``, …) or from the URL's query (``s3://b/p?endpoint_override=HOST:PORT``).
``file://`` URLs are local paths.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from autoprune.core.errors import AutopruneError, first_line
from autoprune.core.files import atomic_path, is_temporary

_OBJECT_STORES = ("s3", "gcs")


def is_url(text: str | Path) -> bool:
    return isinstance(text, str) and "://" in text


def local_path(text: str | Path) -> Path | None:
    """The local path ``text`` names (a path or a ``file://`` URL), or None for a remote URL."""
    if not is_url(text):
        return Path(text)
    parts = urlsplit(str(text))
    return Path(unquote(parts.path)) if parts.scheme == "file" else None


@dataclass(frozen=True)
class RemoteFile:
    path: str  # relative to the location, with "/"
    size: int
    mtime: dt.datetime | None


class Location:
    """A directory at a URL: list, read and write whole files (each write is atomic on object stores
    and on local filesystems: a reader sees the old object or the new one)."""

    def __init__(self, url: str, fs: Any, root: str) -> None:
        self.url, self.fs, self.root = url if "?" in url else url.rstrip("/"), fs, root.rstrip("/")

    @classmethod
    def parse(cls, url: str, *, what: str = "--out") -> Location:
        """``url`` opened, or a one-line error naming it (unknown scheme, missing package, bad query)."""
        import pyarrow.fs as pafs

        try:
            fs, root = pafs.FileSystem.from_uri(url)
        except Exception as exc:  # noqa: BLE001 - one line, whatever pyarrow raised
            if "Unrecognized filesystem type" not in str(exc):  # pyarrow knows the scheme, and could not open it
                raise AutopruneError(f"{what} {url}: cannot open it ({first_line(exc)}); check the URL, the "
                                     "credentials and the endpoint (AWS_ENDPOINT_URL, ?region=…)") from None
            fs, root = _fsspec(url, what=what, first=exc)  # a scheme pyarrow does not know: fsspec may
        return cls(url, fs, root)

    def __repr__(self) -> str:
        return f"Location({self.url!r})"

    def child(self, name: str) -> Location:
        base, sep, query = self.url.partition("?")  # s3://b/p?endpoint_override=… keeps its query
        return Location(f"{base.rstrip('/')}/{name}{sep}{query}", self.fs, f"{self.root}/{name}")

    @property
    def name(self) -> str:
        return self.root.rsplit("/", 1)[-1]

    def _full(self, rel: str) -> str:
        return f"{self.root}/{rel}" if rel else self.root

    def check(self, *, what: str = "--out") -> None:
        """Reachable, and its bucket (the first part of the path) exists: else a one-line error."""
        import pyarrow.fs as pafs

        bucket = self.root.split("/", 1)[0]
        try:
            info = self.fs.get_file_info(bucket)
        except Exception as exc:  # noqa: BLE001 - network, credentials, endpoint: the message says which
            raise AutopruneError(f"{what} {self.url}: cannot reach it ({first_line(exc)}); check the URL, "
                                 "the credentials and the endpoint (AWS_ENDPOINT_URL)") from None
        if info.type == pafs.FileType.NotFound:
            raise AutopruneError(f"{what} {self.url}: {bucket!r} does not exist; create the bucket (or directory) "
                                 "first, or pass another URL") from None

    def exists(self, rel: str = "") -> bool:
        import pyarrow.fs as pafs

        return self.fs.get_file_info(self._full(rel)).type != pafs.FileType.NotFound

    def is_file(self, rel: str) -> bool:
        import pyarrow.fs as pafs

        return self.fs.get_file_info(self._full(rel)).type == pafs.FileType.File

    def files(self) -> list[RemoteFile]:
        """Every file under this directory, at any depth."""
        import pyarrow.fs as pafs

        infos = self.fs.get_file_info(pafs.FileSelector(self.root, recursive=True, allow_not_found=True))
        out = []
        for info in infos:
            if info.type != pafs.FileType.File or is_temporary(info.base_name):
                continue
            sub = info.path[len(self.root) + 1:] if info.path.startswith(self.root + "/") else info.base_name
            out.append(RemoteFile(path=sub, size=info.size, mtime=info.mtime))
        return sorted(out, key=lambda f: f.path)

    def dirs(self) -> list[str]:
        """The names of the directories directly under this one."""
        import pyarrow.fs as pafs

        infos = self.fs.get_file_info(pafs.FileSelector(self.root, recursive=False, allow_not_found=True))
        return sorted(i.base_name for i in infos if i.type == pafs.FileType.Directory)

    def read(self, rel: str) -> bytes:
        with self.fs.open_input_stream(self._full(rel)) as f:
            return f.read()

    def write(self, rel: str, data: bytes) -> None:
        """Write one whole file; a reader never sees part of it."""
        full = self._full(rel)
        parent = full.rsplit("/", 1)[0]
        if self.fs.type_name not in _OBJECT_STORES:  # buckets have no directories to make (and S3 would
            self.fs.create_dir(parent, recursive=True)  # get an empty marker object per level)
        if self.fs.type_name == "local":  # a local filesystem behind a URL: write beside, then rename
            tmp = f"{parent}/.{full.rsplit('/', 1)[1]}.{os.getpid()}.tmp"
            with self.fs.open_output_stream(tmp) as f:
                f.write(data)
            self.fs.move(tmp, full)
        else:  # one PUT: the object appears whole or not at all
            with self.fs.open_output_stream(full) as f:
                f.write(data)

    def download(self, rel: str, dest: Path, *, mtime: dt.datetime | None = None) -> None:
        with atomic_path(dest) as tmp:
            tmp.write_bytes(self.read(rel))
        if mtime is not None:
            stamp = mtime.timestamp()
            os.utime(dest, (stamp, stamp))


def _fsspec(url: str, *, what: str, first: Exception) -> tuple[Any, str]:
    scheme = urlsplit(url).scheme
    try:
        import fsspec
        from pyarrow.fs import FSSpecHandler, PyFileSystem

        fs, root = fsspec.core.url_to_fs(url)
    except ImportError as exc:  # fsspec itself, or the package for this scheme (s3fs, adlfs, …)
        raise AutopruneError(f"{what} {url}: {scheme}:// needs a package that is not installed "
                             f"({exc.name or first_line(exc)}); install it, or write to a local or shared "
                             "path") from None
    except Exception:  # noqa: BLE001 - neither pyarrow nor fsspec can open it: say what pyarrow said
        raise AutopruneError(f"{what} {url}: not a location autoprune can write ({first_line(first)}); pass a "
                             "directory, or a URL such as s3://bucket/prefix, gs://bucket/prefix or "
                             "file:///path") from None
    return PyFileSystem(FSSpecHandler(fs)), root
