"""Reading the package's own JSON records, npz files and Parquet tables, with one-line errors naming the file.

Manifests, group records, metrics records and feature files are read by later stages and by
``softcfg`` commands a user runs by hand; a truncated, replaced or wrong file must be named, not
surface as a ``JSONDecodeError`` or ``KeyError`` traceback from deep inside a stage.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from softcfg.options import UserError

if TYPE_CHECKING:
    import pandas as pd


def read_json(path: str | Path, what: str) -> Any:
    """The JSON value of ``path`` (``what`` says which record it should be, for the message)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise UserError(f"{path}: {what} not found") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: {what} not readable: {exc}") from exc
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: {what} is not JSON (truncated?): {exc}") from exc


def read_record(path: str | Path, what: str, keys: Iterable[str] = ()) -> dict[str, Any]:
    """A JSON object with at least ``keys``."""
    record = read_json(path, what)
    if not isinstance(record, dict):
        raise UserError(f"{path}: {what} must be a JSON object, got {type(record).__name__}")
    missing = [k for k in keys if k not in record]
    if missing:
        raise UserError(f"{path}: {what} has no {missing[0]!r} entry")
    return record


def read_npz(
    path: str | Path, what: str, keys: Iterable[str], only: Iterable[str] | None = None
) -> dict[str, np.ndarray]:
    """The arrays of an npz that must hold ``keys`` (no pickled objects): all of them, or those of
    ``only`` it has (the others are not read)."""
    keys = list(keys)
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in keys if k not in data.files]
            if missing:
                raise UserError(f"{path}: not a {what}: no {missing[0]!r} array (has {sorted(data.files)})")
            wanted = data.files if only is None else [k for k in only if k in data.files]
            return {k: data[k] for k in wanted}
    except FileNotFoundError as exc:
        raise UserError(f"{path}: {what} not found") from exc
    except UserError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise UserError(f"{path}: not a readable {what} (truncated or not an npz): {exc}") from exc


def read_table(path: str | Path, what: str) -> pd.DataFrame:
    """A Parquet table ``softcfg aggregate`` wrote (``what`` names which, for the message)."""
    import pandas as pd
    import pyarrow

    try:
        return pd.read_parquet(path)
    except FileNotFoundError as exc:
        raise UserError(f"{path}: {what} not found") from exc
    except (OSError, pyarrow.ArrowException) as exc:
        raise UserError(f"{path}: not a readable {what} (truncated or not Parquet): {exc}") from exc
