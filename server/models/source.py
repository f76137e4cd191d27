"""A predictor directory's content: what belongs to it, its digest, and an immutable snapshot.

The version id is a sha256 over the model's full name and the normalized content (each file's
relative path and bytes, sorted), so the same directory pushed twice to the same model is the
same version. Ignored: ``.cog/``, ``__pycache__``, ``.git``, virtualenvs, our own data dir, and
anything listed in the directory's ``.dockerignore`` (what ``cog build`` would leave out too).
"""

import fnmatch
import hashlib
import shutil
from collections.abc import Iterator
from pathlib import Path

ALWAYS_IGNORED = {".cog", "__pycache__", ".git", ".venv", "venv", ".cogway", "node_modules"}
ALWAYS_IGNORED |= {".mypy_cache", ".ruff_cache", ".pytest_cache", ".cache"}


def _patterns(root: Path) -> list[tuple[bool, str]]:
    """``.dockerignore`` rules as (negated, pattern), in order; the last match wins."""
    ignore = root / ".dockerignore"
    if not ignore.is_file():
        return []
    rules = []
    for line in (raw.strip() for raw in ignore.read_text().splitlines()):
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        rules.append((negated, line.lstrip("!").strip("/")))
    return rules


def _matches(rel: str, pattern: str) -> bool:
    parts = rel.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    return any(fnmatch.fnmatchcase(prefix, pattern) for prefix in prefixes)


def _ignored(rel: str, rules: list[tuple[bool, str]]) -> bool:
    ignored = False
    for negated, pattern in rules:
        if _matches(rel, pattern):
            ignored = not negated
    return ignored


def files(root: Path) -> Iterator[Path]:
    """The files that make up the predictor, relative to ``root``, in a stable order."""
    rules = _patterns(root)

    def walk(directory: Path) -> Iterator[Path]:
        for entry in sorted(directory.iterdir(), key=lambda p: p.name):
            if entry.name in ALWAYS_IGNORED or entry.name.endswith(".pyc"):
                continue
            if entry.is_dir() and not entry.is_symlink():
                yield from walk(entry)
            elif entry.is_file() and not _ignored(entry.relative_to(root).as_posix(), rules):
                yield entry.relative_to(root)

    yield from walk(root)


def digest(root: Path, model: str) -> str:
    h = hashlib.sha256()
    h.update(model.encode() + b"\0")
    for rel in files(root):
        h.update(rel.as_posix().encode() + b"\0")
        h.update(hashlib.sha256((root / rel).read_bytes()).digest())
    return h.hexdigest()


def snapshot(root: Path, dest: Path) -> None:
    """Copy the predictor's files to ``dest`` (once; an existing snapshot is kept)."""
    if dest.exists():
        return
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    for rel in files(root):
        target = tmp / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / rel, target)
    tmp.mkdir(parents=True, exist_ok=True)
    tmp.rename(dest)
