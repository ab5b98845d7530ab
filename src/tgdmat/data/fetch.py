"""Standard benchmark CSVs on demand: download, verify against the published git blob id, store.

``tgdmat data fetch perov_5`` downloads each split's CSV from the repository that publishes it
(CDVAE for Perov-5, Carbon-24 and MP-20; DiffCSP for MPTS-52, pinned commits), resumes a broken
download with HTTP Range requests, checks the git blob id (SHA-1 of ``"blob <size>\\0" + bytes``,
what ``git hash-object`` prints) and stores ``<data root>/<dataset>/<split>.csv.gz`` where the
loaders look. A file that fails the check is never stored.
"""
from __future__ import annotations

import gzip
import hashlib
import http.client
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from ..atomic import atomic_path

GITHUB_RAW = "https://raw.githubusercontent.com"
CDVAE = "txie-93/cdvae/f857f598d6f6cca5dc1ea0582d228f12dcc2c2ea"
DIFFCSP = "jiaor17/DiffCSP/7121d159826efa2ba9500bf299250d96da37f146"
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Source:
    """Where one split's CSV is published and the git blob id it must have."""

    repo: str  # owner/name/commit
    path: str
    blob: str

    def url(self, base: str = GITHUB_RAW) -> str:
        return f"{base.rstrip('/')}/{self.repo}/{self.path}"


# git blob ids as listed in ../shared/data/README.md
MANIFEST: dict[str, dict[str, Source]] = {
    "perov_5": {
        "train": Source(CDVAE, "data/perov_5/train.csv", "0769074b5d51d293b765c4371b8f55c468c9c9f2"),
        "val": Source(CDVAE, "data/perov_5/val.csv", "4a2c8dde98347dd0e01fa83dcf3982c2abe98f9f"),
        "test": Source(CDVAE, "data/perov_5/test.csv", "d3c5d5af4b27a2a139149f2bb73c8a3dba9d8ac1"),
    },
    "carbon_24": {
        "train": Source(CDVAE, "data/carbon_24/train.csv", "5e7ae970fbad8ddc46b6963e8cd6e425f11783a6"),
        "val": Source(CDVAE, "data/carbon_24/val.csv", "b3e29b927883642426ca1d9632d00359b412742b"),
        "test": Source(CDVAE, "data/carbon_24/test.csv", "9beca843fde489de1fe288b32f9e3ff710d42803"),
    },
    "mp_20": {
        "train": Source(CDVAE, "data/mp_20/train.csv", "b1c9d498565ac2fd8d075a51ff2ef5e51ba6c21f"),
        "val": Source(CDVAE, "data/mp_20/val.csv", "7efe4d7ebeb4f460ceaad35e5326c42111d9c9a1"),
        "test": Source(CDVAE, "data/mp_20/test.csv", "5dc643041df53f5ce4970a79930ad262b4f07acd"),
    },
    "mpts_52": {
        "train": Source(DIFFCSP, "data/mpts_52/train.csv", "28c53b0a0fd3f32fb8078aca8e5b484e372790c6"),
        "val": Source(DIFFCSP, "data/mpts_52/val.csv", "a377ba0ca7bee37ee69d9f50f8362eaa35d9f690"),
        "test": Source(DIFFCSP, "data/mpts_52/test.csv", "2e8af159618f63be346b6527f155514323964423"),
    },
}


class FetchError(RuntimeError):
    """A download that cannot be completed or verified (one line for the CLI)."""


def git_blob_id(data: bytes) -> str:
    """What ``git hash-object`` prints for a file with these bytes."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def stored_blob_id(path: Path) -> str | None:
    """The git blob id of a stored .csv.gz's decompressed CSV, or None when it is unreadable."""
    try:
        return git_blob_id(gzip.decompress(path.read_bytes()))
    except (OSError, EOFError):
        return None


def download(url: str, part: Path, retries: int = 5, timeout: float = 60.0, progress: bool = False) -> bytes:
    """The bytes at ``url``; a dropped connection is resumed from ``part`` with a Range request."""
    part.parent.mkdir(parents=True, exist_ok=True)
    last = ""
    for _ in range(retries):
        have = part.stat().st_size if part.exists() else 0
        request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                if have and response.status != 206:  # the server ignored the range: start again
                    have = 0
                    part.unlink(missing_ok=True)
                length = response.headers.get("Content-Length")
                expected = have + int(length) if length and length.isdigit() else None
                with open(part, "ab") as fh:
                    while chunk := response.read(1 << 16):
                        fh.write(chunk)
                        if progress:
                            print(f"\r{url}: {fh.tell():,} of {expected or '?'} bytes", end="", file=sys.stderr)
                    if expected is not None and fh.tell() < expected:
                        raise ConnectionError(f"connection dropped at byte {fh.tell():,} of {expected:,}")
            if progress:
                print(file=sys.stderr)
            return part.read_bytes()
        except urllib.error.HTTPError as exc:
            if exc.code == 416 and part.exists():  # the part file is already complete
                return part.read_bytes()
            raise FetchError(f"{url}: HTTP {exc.code} {exc.reason}") from None
        except (urllib.error.URLError, OSError, ConnectionError, http.client.HTTPException) as exc:  # dropped or refused: resume
            last = str(getattr(exc, "reason", exc)) or type(exc).__name__
    raise FetchError(f"{url}: download failed after {retries} attempts ({last}); run the command again to resume")


def fetch_split(dataset: str, split: str, root: Path, base_url: str = GITHUB_RAW, progress: bool = False) -> tuple[Path, bool]:
    """Download, verify and store one split; (path, whether anything was downloaded)."""
    source = MANIFEST[dataset][split]
    dest = root / dataset / f"{split}.csv.gz"
    if dest.exists() and stored_blob_id(dest) == source.blob:
        return dest, False
    part = root / dataset / f".{split}.csv.part"
    data = download(source.url(base_url), part, progress=progress)
    blob = git_blob_id(data)
    if blob != source.blob:
        part.unlink(missing_ok=True)  # a wrong file is never resumed from
        raise FetchError(f"{source.url(base_url)}: git blob {blob} differs from the published {source.blob}; the download is corrupt (nothing stored)")
    with atomic_path(dest) as tmp:
        tmp.write_bytes(gzip.compress(data, compresslevel=9, mtime=0))
    part.unlink(missing_ok=True)
    return dest, True


def fetch(dataset: str, root: Path, splits: tuple[str, ...] = SPLITS, base_url: str = GITHUB_RAW, progress: bool = False) -> list[tuple[Path, bool]]:
    """Fetch the requested splits of a standard dataset into ``root``."""
    if dataset not in MANIFEST:
        raise FetchError(f"unknown dataset {dataset!r}: fetch knows {', '.join(MANIFEST)}")
    unknown = [s for s in splits if s not in SPLITS]
    if unknown:
        raise FetchError(f"unknown split {unknown[0]!r}: use {', '.join(SPLITS)}")
    return [fetch_split(dataset, split, root, base_url, progress) for split in splits]


__all__ = ["MANIFEST", "FetchError", "fetch", "fetch_split", "git_blob_id", "download"]
