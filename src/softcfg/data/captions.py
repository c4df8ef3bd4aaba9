"""Captions of digit scenes: a template grammar over GenEval's six task kinds, its parser, the scene
drawn for a caption, and the word-level tokenizer of the embedded text-conditioned model.

A caption's metadata has GenEval's form (``tag``, ``include``, ``exclude`` for counting, ``prompt``),
with digit names as classes and palette names as colours, so one metadata line both prompts the model
and tells a GenEval-style scorer what the image must hold. Examples:

- single_object: "a photo of a seven"
- two_object:    "a photo of a seven and an eight"
- counting:      "a photo of three fours" (1 to 4 digits of one class)
- colors:        "a photo of a red seven"
- position:      "a photo of a two left of a seven" (left of / right of / above / below, in the 2 x 2 grid)
- color_attr:    "a photo of a red seven and a blue two"
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from softcfg.data.prompts import GENEVAL_TAGS as TASKS
from softcfg.data.prompts import PromptReader, preview
from softcfg.data.scenes import DIGIT_NAMES, GRID, PALETTE, UNTINTED, Scene, SceneObject
from softcfg.options import UserError

if TYPE_CHECKING:
    from softcfg.conditioning import Prompts
    from softcfg.config import ModelEntry

COUNT_WORDS = ("one", "two", "three", "four")  # counting: 1 to 4 digits (a 2 x 2 grid holds four)
PLURALS = tuple(name + ("es" if name.endswith("x") else "s") for name in DIGIT_NAMES)
RELATIONS = ("left of", "right of", "above", "below")  # "B <relation> A": B's place relative to A
COLORS = tuple(PALETTE)
PREFIX = ("a", "photo", "of")
# The embedded model's GenEval-format prompt set, package data: ``prompt_metadata(PROMPTS_PER_TASK,
# PROMPT_SEED)``, one JSON line each (``python -m softcfg.data.captions`` writes it).
PROMPT_FILE = "digits_geneval.jsonl"
PROMPTS_PER_TASK = 10
PROMPT_SEED = 0
Metadata = dict[str, Any]


def _obj(digit: int, color: str | None = None, count: int = 1) -> dict[str, Any]:
    obj: dict[str, Any] = {"class": DIGIT_NAMES[digit], "count": count}
    if color is not None:
        obj["color"] = color
    return obj


def _article(word: str) -> str:
    """GenEval's article: "an" before a vowel ("an eight", "an orange")."""
    return "an" if word[0] in "aeiou" else "a"


def _phrase(obj: Mapping[str, Any]) -> str:
    words = [*([obj["color"]] if "color" in obj else []), obj["class"]]
    return " ".join([_article(words[0]), *words])


def caption_of(tag: str, include: list[dict[str, Any]]) -> str:
    """The grammar's caption of a task's ``include`` list."""
    if tag == "counting":
        count, name = include[0]["count"], include[0]["class"]
        noun = name if count == 1 else PLURALS[DIGIT_NAMES.index(name)]
        return f"a photo of {COUNT_WORDS[count - 1]} {noun}"
    if tag == "position":
        return f"a photo of {_phrase(include[1])} {include[1]['position'][0]} {_phrase(include[0])}"
    return "a photo of " + " and ".join(_phrase(obj) for obj in include)


def metadata_of(tag: str, include: list[dict[str, Any]]) -> Metadata:
    """GenEval's metadata line: counting also excludes one more of the class."""
    meta: Metadata = {"tag": tag, "include": include}
    if tag == "counting":
        meta["exclude"] = [{"class": include[0]["class"], "count": include[0]["count"] + 1}]
    meta["prompt"] = caption_of(tag, include)
    return meta


def draw_metadata(rng: np.random.Generator, tag: str) -> Metadata:
    """A random caption of task ``tag``: distinct classes (and colours) where two objects are named."""
    a, b = (int(d) for d in rng.choice(len(DIGIT_NAMES), size=2, replace=False))
    c1, c2 = (str(c) for c in rng.choice(COLORS, size=2, replace=False))
    if tag == "single_object":
        include = [_obj(a)]
    elif tag == "two_object":
        include = [_obj(a), _obj(b)]
    elif tag == "counting":
        include = [_obj(a, count=int(rng.integers(1, len(COUNT_WORDS) + 1)))]
    elif tag == "colors":
        include = [_obj(a, c1)]
    elif tag == "position":
        include = [_obj(a), {**_obj(b), "position": [RELATIONS[int(rng.integers(len(RELATIONS)))], 0]}]
    elif tag == "color_attr":
        include = [_obj(a, c1), _obj(b, c2)]
    else:
        raise ValueError(f"unknown task {tag!r} (expected one of {TASKS})")
    return metadata_of(tag, include)


def _position_cells(rng: np.random.Generator, relation: str) -> tuple[tuple[int, int], tuple[int, int]]:
    """Cells (reference A, object B) with B ``relation`` A: same row for left/right, same column for
    above/below, so the relation is the only offset between them."""
    line = int(rng.integers(GRID))
    first, second = {"left of": (1, 0), "right of": (0, 1), "above": (1, 0), "below": (0, 1)}[relation]
    if relation in ("left of", "right of"):
        return (line, first), (line, second)
    return (first, line), (second, line)


def draw_scene(meta: Metadata, rng: np.random.Generator, pools: Sequence[np.ndarray]) -> Scene:
    """A scene that satisfies ``meta``: ``pools[d]`` are the scikit-learn image rows of digit d to draw
    from (one split's); cells are drawn uniformly unless a position relation fixes them."""
    objects = [
        (DIGIT_NAMES.index(o["class"]), o.get("color", UNTINTED))
        for o in meta["include"]
        for _ in range(o["count"])
    ]
    if meta["tag"] == "position":
        cells = list(_position_cells(rng, meta["include"][1]["position"][0]))
    else:
        chosen = rng.choice(GRID * GRID, size=len(objects), replace=False)
        cells = [divmod(int(i), GRID) for i in chosen]
    return Scene(
        tuple(
            SceneObject(digit, tint, row, col, int(rng.choice(pools[digit])))
            for (digit, tint), (row, col) in zip(objects, cells, strict=True)
        )
    )


@dataclass(frozen=True)
class Example:
    """One training or evaluation example: the scene (ground truth), its caption and metadata."""

    scene: Scene
    caption: str
    metadata: Metadata


def draw_examples(n: int, seed: int, pools: Sequence[np.ndarray]) -> list[Example]:
    """``n`` examples, tasks cycling through ``TASKS`` (equal shares), deterministic from ``seed``."""
    rng = np.random.default_rng(seed)
    examples = []
    for i in range(n):
        meta = draw_metadata(rng, TASKS[i % len(TASKS)])
        examples.append(Example(draw_scene(meta, rng, pools), meta["prompt"], meta))
    return examples


def prompt_metadata(per_task: int, seed: int) -> list[Metadata]:
    """``per_task`` distinct captions of each task, in task order: the embedded model's GenEval set."""
    rng = np.random.default_rng(seed)
    lines: list[Metadata] = []
    for tag in TASKS:
        seen: set[str] = set()
        while len(seen) < per_task:
            meta = draw_metadata(rng, tag)
            if meta["prompt"] not in seen:
                seen.add(meta["prompt"])
                lines.append(meta)
    return lines


def _parse_phrase(words: list[str], at: int, text: str) -> tuple[dict[str, Any], int]:
    """``a|an [colour] name`` from word ``at``; returns the object and the index after it."""
    if at + 1 >= len(words) or words[at] != _article(words[at + 1]):
        raise UserError(f"caption {text!r}: expected 'a' or 'an' (before a vowel) at word {at + 1}")
    at += 1
    color = words[at] if at < len(words) and words[at] in COLORS else None
    at += color is not None
    if at >= len(words) or words[at] not in DIGIT_NAMES:
        raise UserError(f"caption {text!r}: expected a digit name at word {at + 1}")
    return _obj(DIGIT_NAMES.index(words[at]), color), at + 1


def parse_caption(text: str) -> Metadata:
    """The metadata of a caption of the grammar (the inverse of ``caption_of``); UserError otherwise."""
    words = text.split()
    if tuple(words[:3]) != PREFIX:
        raise UserError(f"caption {text!r}: expected it to start with 'a photo of'")
    rest = words[3:]
    if len(rest) == 2 and rest[0] in COUNT_WORDS:
        count = COUNT_WORDS.index(rest[0]) + 1
        nouns = DIGIT_NAMES if count == 1 else PLURALS
        if rest[1] not in nouns:
            raise UserError(f"caption {text!r}: expected {'a digit name' if count == 1 else 'a plural'} last")
        return metadata_of("counting", [_obj(nouns.index(rest[1]), count=count)])
    first, at = _parse_phrase(words, 3, text)
    if at == len(words):
        return metadata_of("colors" if "color" in first else "single_object", [first])
    joint = " ".join(words[at : at + 2])
    relation = next((r for r in RELATIONS if words[at : at + len(r.split())] == r.split()), None)
    if words[at] != "and" and relation is None:
        raise UserError(
            f"caption {text!r}: expected 'and' or a relation ({', '.join(RELATIONS)}) at {joint!r}"
        )
    second, end = _parse_phrase(words, at + (1 if relation is None else len(relation.split())), text)
    if end != len(words):
        raise UserError(f"caption {text!r}: unexpected words after word {end}")
    if first["class"] == second["class"]:
        raise UserError(f"caption {text!r}: two objects of one class (counting names them with a number)")
    if relation is not None:
        if "color" in first or "color" in second:
            raise UserError(f"caption {text!r}: position captions name no colours")
        return metadata_of("position", [second, {**first, "position": [relation, 0]}])
    if ("color" in first) != ("color" in second):
        raise UserError(f"caption {text!r}: colour both objects or neither")
    return metadata_of("color_attr" if "color" in first else "two_object", [first, second])


# ---- tokenizer ----------------------------------------------------------------------------------------

PAD, BOS = "<pad>", "<bos>"


def grammar_words() -> tuple[str, ...]:
    """Every word a caption of the grammar can use, sorted (the tokenizer's vocabulary after PAD, BOS)."""
    words = {*PREFIX, "an", "and", *DIGIT_NAMES, *PLURALS, *COUNT_WORDS, *COLORS}
    words.update(w for r in RELATIONS for w in r.split())
    return tuple(sorted(words))


MAX_CAPTION_WORDS = len(caption_of("color_attr", [_obj(0, "yellow"), _obj(1, "yellow")]).split())


class WordTokenizer:
    """Whitespace words to ids: 0 is padding (``Prompts`` pads with 0), 1 the BOS every prompt starts
    with, so an empty prompt (the unconditional rows) is BOS alone. Case-insensitive."""

    def __init__(self, words: Sequence[str] = grammar_words(), max_words: int = MAX_CAPTION_WORDS) -> None:
        self.vocab = (PAD, BOS, *words)
        self.ids = {w: i for i, w in enumerate(self.vocab)}
        self.max_words = max_words

    @classmethod
    def of_checkpoint(cls, ckpt: dict) -> WordTokenizer:
        """The tokenizer a digits_text checkpoint stores: its words (ids are positions) and length."""
        return cls(tuple(ckpt["vocab"]), int(ckpt["max_words"]))

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    @property
    def max_len(self) -> int:
        """Longest prompt in ids: BOS and ``max_words`` words."""
        return 1 + self.max_words

    def encode_one(self, text: str) -> list[int]:
        words = text.lower().split()
        unknown = [w for w in words if w not in self.ids or w in (PAD, BOS)]
        if unknown:
            raise UserError(f"prompt {preview(text)}: word {unknown[0]!r} is not in the model's vocabulary")
        if len(words) > self.max_words:
            raise UserError(
                f"prompt {preview(text)}: {len(words)} words, the model reads at most {self.max_words}"
            )
        return [self.ids[BOS]] + [self.ids[w] for w in words]

    def encode(self, texts: Sequence[str]) -> Prompts:
        """Left-padded ids [B, L] (L: the longest prompt) with their mask."""
        import torch  # here: a sweep reads prompts with this tokenizer without importing torch

        from softcfg.conditioning import Prompts

        rows = [self.encode_one(t) for t in texts]
        width = max((len(r) for r in rows), default=1)
        ids = torch.zeros(len(rows), width, dtype=torch.long)
        for i, row in enumerate(rows):
            ids[i, width - len(row) :] = torch.tensor(row)
        return Prompts(ids, ids != 0, tuple(texts))

    def decode(self, ids: Sequence[int]) -> str:
        """The words of a row of ids, padding and BOS dropped."""
        return " ".join(self.vocab[i] for i in ids if i > 1)


CHECKPOINT_KEYS = ("config", "vocab", "max_words", "state_dict")


def read_digits_text_checkpoint(path: str | Path) -> dict:
    """A digits_text checkpoint, its keys checked: the model's loader and the prompt check (which needs
    only its words) both read it here."""
    from softcfg.models.base import read_checkpoint  # torch: only where a checkpoint is read

    ckpt = read_checkpoint(path)
    if not isinstance(ckpt, dict) or any(k not in ckpt for k in CHECKPOINT_KEYS):
        raise UserError(
            f"checkpoint {path} is not a digits_text checkpoint (needs {', '.join(CHECKPOINT_KEYS)})"
        )
    return ckpt


def prompt_reader(entry: ModelEntry, trained: bool) -> PromptReader:
    """digits_text's prompts: the words of the entry's checkpoint, or where the workflow trains it (the
    checkpoint may not exist yet) the grammar's, which ``softcfg train`` gives every model."""
    words = (
        WordTokenizer()
        if trained
        else WordTokenizer.of_checkpoint(read_digits_text_checkpoint(entry.checkpoint))
    )
    return PromptReader(words.encode_one, words.max_len)


def main() -> None:
    """Write the package's prompt set (``PROMPT_FILE``) beside this module."""
    from pathlib import Path

    from softcfg.io.atomic import atomic_write_text

    lines = prompt_metadata(PROMPTS_PER_TASK, PROMPT_SEED)
    atomic_write_text(Path(__file__).with_name(PROMPT_FILE), "".join(json.dumps(m) + "\n" for m in lines))


if __name__ == "__main__":
    main()
