"""Content digests of the files a run loads: a checkpoint or tokenizer file, or a checkpoint folder
(transformers' ``save_pretrained`` layout). They key resumable work (``sampling.shards.resume_key``) and
are recorded in every shard's manifest, so they follow contents, never modification times or locations:
a copied, moved or touched checkpoint resumes, a changed one does not."""

from __future__ import annotations

import hashlib
from pathlib import Path

from softcfg.io.atomic import sha256_file
from softcfg.options import UserError


def _folder_files(folder: Path) -> list[Path]:
    """Every regular file under ``folder``, in the order of their POSIX paths relative to it; hidden
    entries (``.cache/`` of a hub download, ``.git/``) are not part of the checkpoint."""
    files = []
    for path in folder.rglob("*"):
        relative = path.relative_to(folder)
        if not any(part.startswith(".") for part in relative.parts) and path.is_file():
            files.append(path)
    return sorted(files, key=lambda p: p.relative_to(folder).as_posix())


def content_sha256(path: str | Path, what: str = "checkpoint") -> str:
    """sha256 of a file's bytes, or of a folder's files: each one's relative path and sha256, in a fixed
    order, so that a changed, added, removed or renamed file changes the digest. A missing path, an
    empty folder or an unreadable part is a UserError naming it (``what``: the entry's role)."""
    path = Path(path)
    try:
        if path.is_file():
            return sha256_file(path)
        if not path.is_dir():
            raise UserError(f"{what} not found: {path}")
        files = _folder_files(path)
        if not files:
            raise UserError(f"{what} folder {path} holds no files")
        digest = hashlib.sha256()
        for file in files:
            digest.update(f"{file.relative_to(path).as_posix()}\0{sha256_file(file)}\n".encode())
        return digest.hexdigest()
    except OSError as exc:
        part = exc.filename or path
        raise UserError(f"{what} {path}: cannot read {part}: {exc.strerror or exc}") from None
