"""Prompt sets: the conditioning axis of a text-conditioned model's runs, read from one of three formats.

- GenEval's metadata (``*.jsonl``): one JSON object per line with ``prompt`` (and ``tag``, ``include``,
  ``exclude``, kept as the scorer's ground truth); prompt i is exported as GenEval folder ``{i:05d}``.
- DPG-Bench's prompt folder: one ``<id>.txt`` per prompt; exported as ``<id>.png``.
- Plain text (``*.txt``): one prompt per line.

A prompt of the first and last formats is named ``prompt{i:05d}`` (its DPG grid and question-table item
id): DPG-Bench's script reads the table with pandas, which would turn a numeric id such as ``00000``
into the integer 0 and match no image.

Every line (or file) is one prompt, so an empty one is an error rather than silently shifting the
indices that shards and exports record. Errors name the file and line. Nothing here imports torch.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from softcfg.options import UserError

GENEVAL_TAGS = ("single_object", "two_object", "counting", "colors", "position", "color_attr")
"""GenEval's six task kinds: a tag outside them would be scored as a task of its own."""

Format = Literal["geneval", "dpg", "text"]


@dataclass(frozen=True)
class PromptEntry:
    """One prompt: its export ``name``, ``text`` and ``metadata`` (GenEval's line; else the prompt)."""

    name: str
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PromptSet:
    """The prompts of one file or folder, in order, with a checksum of what was read."""

    path: Path
    format: Format
    entries: tuple[PromptEntry, ...]
    sha256: str

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def texts(self) -> tuple[str, ...]:
        return tuple(e.text for e in self.entries)

    def location(self, index: int) -> str:
        """Where prompt ``index`` was read: ``file:line`` (every line is one prompt) or its DPG file."""
        if self.format == "dpg":
            return str(self.path / f"{self.entries[index].name}.txt")
        return f"{self.path}:{index + 1}"


@dataclass(frozen=True)
class PromptReader:
    """How a text model reads a prompt, from its tokenizer files alone: ``encode`` gives the prompt's ids
    as the sampler feeds them (a UserError for text it cannot read), ``limit`` the most ids it reads."""

    encode: Callable[[str], Sequence[int]]
    limit: int


def preview(text: str, chars: int = 60) -> str:
    """A prompt as an error message quotes it: its first ``chars`` characters."""
    return repr(text if len(text) <= chars else text[:chars] + "...")


def check_prompts(prompts: PromptSet, reader: PromptReader) -> None:
    """Every prompt of the set is one the model reads; else a UserError naming its file and line."""
    for index, entry in enumerate(prompts.entries):
        try:
            length = len(reader.encode(entry.text))
        except UserError as exc:
            raise UserError(f"{prompts.location(index)}: {exc}") from None
        if length > reader.limit:
            raise UserError(
                f"{prompts.location(index)}: prompt {preview(entry.text)} is {length} tokens, the model "
                f"reads at most {reader.limit} before its image tokens"
            )


def prompt_format(path: Path) -> Format:
    if path.is_dir():
        return "dpg"
    if not path.is_file():
        raise UserError(f"prompt file not found: {path}")
    if path.suffix == ".jsonl":
        return "geneval"
    if path.suffix == ".txt":
        return "text"
    raise UserError(
        f"prompt file {path}: expected GenEval metadata (.jsonl), a DPG-Bench prompt folder or a .txt file "
        "(one prompt per line)"
    )


def _lines(path: Path) -> list[str]:
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise UserError(f"{path}:{line}: not UTF-8 text") from None
    return text.splitlines()


def _name(index: int) -> str:
    """Not a number, so that pandas reads it back as the same string."""
    return f"prompt{index:05d}"


def _geneval(path: Path) -> list[PromptEntry]:
    entries = []
    for number, line in enumerate(_lines(path), start=1):
        where = f"{path}:{number}"
        try:
            meta = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UserError(f"{where}: not a JSON line ({exc.msg})") from None
        if not isinstance(meta, dict):
            raise UserError(f"{where}: expected a JSON object with a 'prompt', got {type(meta).__name__}")
        prompt = meta.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            raise UserError(f"{where}: 'prompt' must be a non-empty string")
        for key, kind in (("tag", str), ("include", list), ("exclude", list)):
            if key in meta and not isinstance(meta[key], kind):
                raise UserError(f"{where}: {key!r} must be a {kind.__name__}")
        if "tag" in meta and meta["tag"] not in GENEVAL_TAGS:
            raise UserError(
                f"{where}: unknown GenEval tag {meta['tag']!r} (GenEval's are {', '.join(GENEVAL_TAGS)})"
            )
        entries.append(PromptEntry(_name(len(entries)), prompt, meta))
    return entries


def _text(path: Path) -> list[PromptEntry]:
    entries = []
    for number, line in enumerate(_lines(path), start=1):
        if not line.strip():
            raise UserError(f"{path}:{number}: empty prompt (every line is one prompt)")
        entries.append(PromptEntry(_name(len(entries)), line.strip(), {"prompt": line.strip()}))
    return entries


def _natural(name: str) -> tuple:
    """Numeric stems in number order (DPG-Bench's ids), others after them by name."""
    return (0, int(name), "") if name.isdigit() else (1, 0, name)


def _dpg(folder: Path) -> list[PromptEntry]:
    entries = []
    visible = (p for p in folder.iterdir() if not p.name.startswith("."))
    for path in sorted(visible, key=lambda p: _natural(p.stem)):
        if path.suffix != ".txt" or not path.is_file():
            raise UserError(f"{path}: a DPG-Bench prompt folder holds only <id>.txt files")
        lines = [line.strip() for line in _lines(path) if line.strip()]
        if not lines:
            raise UserError(f"{path}:1: empty prompt")
        entries.append(PromptEntry(path.stem, " ".join(lines), {"prompt": " ".join(lines)}))
    return entries


def _digest(path: Path) -> str:
    digest = hashlib.sha256()
    files = sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]
    for f in files:
        digest.update(f"{f.name}\0".encode() + f.read_bytes() + b"\0")
    return digest.hexdigest()


def read_prompts(path: str | Path) -> PromptSet:
    """The prompt set at ``path`` (format from its kind: folder, .jsonl, .txt); UserError naming the file
    and line of the first bad entry, or an empty set."""
    path = Path(path)
    fmt = prompt_format(path)
    entries = {"geneval": _geneval, "dpg": _dpg, "text": _text}[fmt](path)
    if not entries:
        raise UserError(f"prompt file {path}: no prompts")
    return PromptSet(path, fmt, tuple(entries), _digest(path))
