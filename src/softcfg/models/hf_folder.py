"""Reading a transformers ``save_pretrained`` folder that a family loads: its one-line errors name the folder
and what is wrong with it, before any weight is read."""

from __future__ import annotations

from pathlib import Path

from transformers import AutoConfig, PreTrainedConfig

from softcfg.options import UserError, first_line


def folder_error(folder: Path, family: str, what: str, exc: Exception | None = None) -> UserError:
    detail = f": {first_line(exc)}" if exc is not None else ""
    return UserError(f"model.checkpoint: {folder} is not a {family} folder ({what}){detail}")


def read_folder_config(folder: str | Path, family: str, model_type: str) -> tuple[Path, PreTrainedConfig]:
    """(folder, its config.json), which must exist, parse and name ``model_type``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"model.checkpoint: {family} folder not found: {folder}")
    if not (folder / "config.json").is_file():
        raise folder_error(folder, family, "no config.json")
    try:
        config = AutoConfig.from_pretrained(folder, local_files_only=True)
    except Exception as exc:
        raise folder_error(folder, family, "config.json unreadable", exc) from exc
    if config.model_type != model_type:
        raise folder_error(
            folder, family, f"config.json model_type is {config.model_type!r}, not {model_type!r}"
        )
    return folder, config
