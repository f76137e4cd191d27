"""Read a pushed predictor: a tar.gz upload, size-limited and extracted without escapes."""

import shutil
import tarfile
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path, PurePosixPath

from server import errors

MAX_MEMBERS = 50_000
EXPANSION_LIMIT = 4  # the unpacked size may be at most this multiple of the upload limit


class BadArchive(errors.APIError):
    """The upload is not a usable tar.gz of a predictor directory."""

    status_code = 400
    title = "Bad archive"


async def receive(chunks: AsyncIterator[bytes], dest: Path, *, limit: int) -> int:
    """Write the request body to ``dest``; 413 as soon as it passes ``limit`` bytes."""
    size = 0
    with dest.open("wb") as out:
        async for chunk in chunks:
            size += len(chunk)
            if size > limit:
                raise errors.PayloadTooLarge(
                    f"The upload is larger than the limit of {limit} bytes."
                )
            out.write(chunk)
    if size == 0:
        raise BadArchive("The request body is empty; send the predictor as a tar.gz.")
    return size


def extract(archive: Path, dest: Path, *, limit: int) -> Path:
    """Unpack into ``dest`` and return the predictor directory (the one holding cog.yaml)."""
    try:
        with tarfile.open(archive, mode="r:gz") as tar:
            members = tar.getmembers()
            if len(members) > MAX_MEMBERS:
                raise BadArchive(f"The archive has more than {MAX_MEMBERS} entries.")
            if sum(m.size for m in members) > limit * EXPANSION_LIMIT:
                raise BadArchive("The archive unpacks to more than the size limit allows.")
            for member in members:
                parts = PurePosixPath(member.name).parts
                if member.name.startswith("/") or ".." in parts:
                    raise BadArchive(f"The archive has a path that escapes its root: {member.name}")
            # The "data" filter refuses absolute paths, '..', links that leave the root and
            # device files (PEP 706).
            tar.extractall(dest, filter="data")
    except tarfile.FilterError as exc:
        raise BadArchive(f"The archive has a path that escapes its root: {exc}") from None
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise BadArchive(f"The upload is not a readable tar.gz: {exc}") from None
    if (dest / "cog.yaml").is_file():
        return dest
    entries = [p for p in dest.iterdir()]
    if len(entries) == 1 and entries[0].is_dir() and (entries[0] / "cog.yaml").is_file():
        return entries[0]
    raise BadArchive("The archive has no cog.yaml at its root (or in its one top directory).")


class Workspace:
    """A temporary directory for one upload, removed afterwards."""

    def __init__(self, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.path = Path(tempfile.mkdtemp(prefix="push-", dir=root))

    def __enter__(self) -> "Workspace":
        return self

    def __exit__(self, *exc: object) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
