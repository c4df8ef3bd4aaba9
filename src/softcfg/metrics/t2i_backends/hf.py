"""``transformers`` backends: Mask2Former + CLIP for GenEval, BLIP VQA for DPG-Bench (local folders only).

``Mask2FormerClip`` reproduces the official detector's post-processing (mmdetection 2.x Mask2Former,
instance mode) on ``Mask2FormerForUniversalSegmentation``'s raw outputs rather than using
``post_process_instance_segmentation`` (which keeps one class per query, thresholds and paints
non-overlapping segments): the top 100 (query, class) pairs by softmax score (no-object column
dropped), mask logits resized bilinearly to the padded input, cropped to the resized image, resized to
the original size, binarised at logit 0; score = class score x mean mask probability inside the mask;
box = the mask's extent (x2, y2 exclusive). Colours follow the official scorer: the object's mask pasted
on a flat #999 background, cropped to its box, classified zero-shot by ``CLIPModel`` among GenEval's ten
colours with the three templates averaged (normalised text embeddings, mean, normalised again).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from softcfg.metrics.geneval import COLORS, Detection, object_names
from softcfg.metrics.t2i_backends import take_options
from softcfg.options import UserError, first_line

MAX_PER_IMAGE = 100
BACKGROUND = (153, 153, 153)  # "#999"
TEMPLATES = ("a photo of a {c} {label}", "a photo of a {c}-colored {label}", "a photo of a {c} object")


def model_folder(path: str, option: str) -> Path:
    folder = Path(path)
    if not (folder / "config.json").is_file():
        raise UserError(f"--option {option}={path}: not a transformers model folder (no config.json)")
    return folder


def from_folder(cls: Any, folder: Path, option: str) -> Any:
    """``cls.from_pretrained(folder)``; what transformers refuses (weights, processor files) in one line
    naming the option."""
    try:
        return cls.from_pretrained(folder, local_files_only=True)
    except Exception as exc:  # transformers raises OSError, ValueError, KeyError... with multi-line text
        raise UserError(
            f"--option {option}={folder}: transformers cannot load it as {cls.__name__}: {first_line(exc)}"
        ) from None


def device(value: str) -> Any:
    import torch

    try:
        return torch.device(value)
    except RuntimeError:
        raise UserError(f"--option device: expected cpu, cuda, cuda:N or mps, got {value!r}") from None


def _positive(options: Mapping[str, str], key: str) -> int:
    value = options[key]
    if not value.isdigit() or int(value) < 1:
        raise UserError(f"--option {key} must be a positive integer, got {value!r}")
    return int(value)


def _features(output: Any) -> Any:
    """Projected embeddings, whether ``get_*_features`` returns a tensor or a model output."""
    return output if hasattr(output, "shape") else output.pooler_output


def mask_boxes(masks: Any) -> Any:
    """[N, H, W] bool -> [N, 4] float boxes (x1, y1, x2, y2), x2/y2 one past the last pixel; 0 when empty."""
    import torch

    boxes = torch.zeros(masks.shape[0], 4)
    cols, rows = masks.any(dim=1), masks.any(dim=2)
    for i in range(masks.shape[0]):
        x, y = torch.nonzero(cols[i]).flatten(), torch.nonzero(rows[i]).flatten()
        if len(x) and len(y):
            boxes[i] = torch.tensor([x[0], y[0], x[-1] + 1, y[-1] + 1], dtype=torch.float32)
    return boxes


def instance_postprocess(
    class_logits: Any,
    mask_logits: Any,
    padded: tuple[int, int],
    valid: tuple[int, int],
    size: tuple[int, int],
    top: int = MAX_PER_IMAGE,
) -> tuple[Any, Any, Any, Any]:
    """One image's (labels, scores, boxes, masks) from [Q, C + 1] class and [Q, h, w] mask logits;
    ``padded`` is the model input's (H, W), ``valid`` the resized image inside it, ``size`` the original."""
    import torch
    import torch.nn.functional as F

    scores = class_logits.float().softmax(dim=-1)[:, :-1]
    num_classes = scores.shape[1]
    best, index = scores.flatten().topk(min(top, scores.numel()))
    labels, queries = index % num_classes, index // num_classes
    unique, inverse = torch.unique(queries, return_inverse=True)
    logits = F.interpolate(
        mask_logits[unique][None].float(), size=padded, mode="bilinear", align_corners=False
    )
    logits = logits[:, :, : valid[0], : valid[1]]
    logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)[0][inverse]
    binary = logits > 0
    quality = (logits.sigmoid() * binary).flatten(1).sum(1) / (binary.flatten(1).sum(1) + 1e-6)
    return labels, best * quality, mask_boxes(binary), binary


class ClipColours:
    """GenEval's colour classifier on a ``CLIPModel`` folder: (image, objects, class) -> colour names."""

    def __init__(self, folder: Path, device: Any) -> None:
        from transformers import AutoProcessor, CLIPModel

        self.device = device
        self.model = from_folder(CLIPModel, folder, "clip").to(device).eval()
        self.processor = from_folder(AutoProcessor, folder, "clip")
        self._classifiers: dict[str, Any] = {}

    def _classifier(self, label: str) -> Any:
        import torch

        if label not in self._classifiers:
            columns = []
            for colour in COLORS:
                texts = [t.format(c=colour, label=label) for t in TEMPLATES]
                tokens = self.processor(text=texts, padding=True, return_tensors="pt").to(self.device)
                with torch.no_grad():
                    emb = _features(self.model.get_text_features(**tokens))
                emb = torch.nn.functional.normalize(emb, dim=-1).mean(dim=0)
                columns.append(emb / emb.norm())
            self._classifiers[label] = torch.stack(columns, dim=1)
        return self._classifiers[label]

    def __call__(self, image: np.ndarray, objects: Sequence[Detection], label: str) -> list[str]:
        import torch
        from PIL import Image

        crops = []
        for obj in objects:
            pasted = (
                image
                if obj.mask is None
                else np.where(obj.mask[:, :, None], image, np.array(BACKGROUND, np.uint8))
            )
            crops.append(Image.fromarray(np.ascontiguousarray(pasted, dtype=np.uint8)).crop(obj.box))
        pixels = self.processor(images=crops, return_tensors="pt")["pixel_values"].to(self.device)
        with torch.no_grad():
            feats = torch.nn.functional.normalize(
                _features(self.model.get_image_features(pixel_values=pixels)), dim=-1
            )
        return [COLORS[int(i)] for i in (feats @ self._classifier(label)).argmax(dim=1)]


class Mask2FormerClip:
    """GenEval detector: a COCO instance Mask2Former and a CLIP from local ``transformers`` folders.

    Options: ``detector`` and ``clip`` (folders), ``device`` (cpu), ``batch_size`` (4).
    """

    colour_names = COLORS

    def __init__(self, options: Mapping[str, str]) -> None:
        from transformers import AutoImageProcessor, Mask2FormerForUniversalSegmentation

        opts = take_options(options, "hf", ["detector", "clip"], {"device": "cpu", "batch_size": "4"})
        detector, clip = model_folder(opts["detector"], "detector"), model_folder(opts["clip"], "clip")
        self.device = device(opts["device"])
        self.batch_size = _positive(opts, "batch_size")
        self.model = from_folder(Mask2FormerForUniversalSegmentation, detector, "detector")
        self.model = self.model.to(self.device).eval()
        self.processor = from_folder(AutoImageProcessor, detector, "detector")
        self.classes = object_names()
        if self.model.config.num_labels != len(self.classes):
            raise UserError(
                f"{detector}: {self.model.config.num_labels} labels; GenEval's detector has the "
                f"{len(self.classes)} COCO classes of object_names.txt (in that order)"
            )
        self.clip = ClipColours(clip, self.device)
        self.name = f"hf({detector.name}, {clip.name})"

    def detect(self, images: Sequence[np.ndarray]) -> list[list[Detection]]:
        import torch

        found = []
        for start in range(0, len(images), self.batch_size):
            batch = list(images[start : start + self.batch_size])
            inputs = self.processor(images=batch, return_tensors="pt")
            pixel_mask = inputs.get("pixel_mask")
            with torch.no_grad():
                out = self.model(
                    pixel_values=inputs["pixel_values"].to(self.device),
                    pixel_mask=None if pixel_mask is None else pixel_mask.to(self.device),
                )
            for i, image in enumerate(batch):
                padded = tuple(inputs["pixel_values"].shape[-2:])
                frame = (
                    padded
                    if pixel_mask is None
                    else tuple(int(v) + 1 for v in pixel_mask[i].nonzero().max(0)[0])
                )
                labels, scores, boxes, masks = instance_postprocess(
                    out.class_queries_logits[i].cpu(),
                    out.masks_queries_logits[i].cpu(),
                    padded,
                    frame,
                    image.shape[:2],
                )
                found.append(
                    [
                        Detection(self.classes[int(c)], tuple(float(v) for v in b), float(s), m.numpy())
                        for c, s, b, m in zip(labels, scores, boxes, masks, strict=True)
                    ]
                )
        return found

    def colours(self, image: np.ndarray, objects: Sequence[Detection], label: str) -> list[str]:
        return self.clip(image, objects, label)


class BlipVQA:
    """DPG VQA with ``BlipForQuestionAnswering`` from a local folder.

    Options: ``model`` (folder), ``device`` (cpu), ``batch_size`` (16), ``max_new_tokens`` (10).
    """

    def __init__(self, options: Mapping[str, str]) -> None:
        from transformers import AutoProcessor, BlipForQuestionAnswering

        opts = take_options(
            options, "hf", ["model"], {"device": "cpu", "batch_size": "16", "max_new_tokens": "10"}
        )
        folder = model_folder(opts["model"], "model")
        self.device = device(opts["device"])
        self.batch_size = _positive(opts, "batch_size")
        self.max_new_tokens = _positive(opts, "max_new_tokens")
        self.model = from_folder(BlipForQuestionAnswering, folder, "model").to(self.device).eval()
        self.processor = from_folder(AutoProcessor, folder, "model")
        self.name = f"hf({folder.name})"

    def answer(self, images: Sequence[np.ndarray], questions: Sequence[str]) -> list[str]:
        import torch

        answers: list[str] = []
        for start in range(0, len(questions), self.batch_size):
            stop = start + self.batch_size
            inputs = self.processor(
                images=list(images[start:stop]),
                text=list(questions[start:stop]),
                padding=True,
                return_tensors="pt",
            ).to(self.device)
            with torch.no_grad():
                out = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens)
            answers += [a.strip() for a in self.processor.batch_decode(out, skip_special_tokens=True)]
        return answers
