"""The official scorers' own models, for users who have their stacks (imported only when built).

``MMDetClip``: GenEval's mmdetection 2.x Mask2Former Swin-S (``mmdet.apis``; upstream pins mmcv-full
1.7.1 and CUDA) with colours from a ``transformers`` CLIP folder (OpenAI's ViT-L/14 weights, which
upstream loads through open_clip). ``MPlugVQA``: DPG-Bench's mPLUG-large through a modelscope pipeline.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import ModuleType

import numpy as np

from softcfg.metrics.geneval import COLORS, Detection, object_names
from softcfg.metrics.t2i_backends import take_options
from softcfg.metrics.t2i_backends.hf import ClipColours, model_folder
from softcfg.options import UserError

MMDET_CONFIG = "configs/mask2former/mask2former_swin-s-p4-w7-224_lsj_8x2_50e_coco.py"
MPLUG = "damo/mplug_visual-question-answering_coco_large_en"


def _import(module: str, stack: str) -> ModuleType:

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise UserError(f"this backend needs {stack}: {exc}") from exc


class MMDetClip:
    """Options: ``checkpoint`` (the .pth), ``clip`` (folder), ``config`` (default: mmdet's own copy of
    the Mask2Former Swin-S config, as upstream resolves it), ``device`` (cuda)."""

    colour_names = COLORS

    def __init__(self, options: Mapping[str, str]) -> None:
        import torch

        opts = take_options(options, "mmdet", ["checkpoint", "clip"], {"config": "", "device": "cuda"})
        mmdet = _import("mmdet", "mmdetection 2.x (mmdet, mmcv-full)")
        apis = _import("mmdet.apis", "mmdetection 2.x (mmdet, mmcv-full)")
        config = opts["config"] or str(Path(mmdet.__file__).parent.parent / MMDET_CONFIG)
        for key, path in (("config", config), ("checkpoint", opts["checkpoint"])):
            if not Path(path).is_file():
                raise UserError(f"--option {key}: file not found: {path}")
        self.model = apis.init_detector(config, opts["checkpoint"], device=opts["device"])
        self.inference = apis.inference_detector
        self.classes = object_names()
        self.clip = ClipColours(model_folder(opts["clip"], "clip"), torch.device(opts["device"]))
        self.name = f"mmdet({Path(opts['checkpoint']).name})"

    def detect(self, images: Sequence[np.ndarray]) -> list[list[Detection]]:
        found = []
        for image in images:
            result = self.inference(self.model, np.ascontiguousarray(image[:, :, ::-1]))  # mmcv reads BGR
            boxes, masks = result if isinstance(result, tuple) else (result, None)
            found.append(
                [
                    Detection(
                        name,
                        tuple(float(v) for v in row[:4]),
                        float(row[4]),
                        None if masks is None else masks[c][j],
                    )
                    for c, name in enumerate(self.classes)
                    for j, row in enumerate(boxes[c])
                ]
            )
        return found

    def colours(self, image: np.ndarray, objects: Sequence[Detection], label: str) -> list[str]:
        return self.clip(image, objects, label)


class MPlugVQA:
    """Options: ``model`` (modelscope id or folder, default the official mPLUG-large), ``device`` (gpu)."""

    def __init__(self, options: Mapping[str, str]) -> None:
        opts = take_options(options, "mplug", [], {"model": MPLUG, "device": "gpu"})
        pipelines = _import("modelscope.pipelines", "modelscope")
        constant = _import("modelscope.utils.constant", "modelscope")
        task = constant.Tasks.visual_question_answering
        self.pipeline = pipelines.pipeline(task, model=opts["model"], device=opts["device"])
        self.name = f"mplug({Path(opts['model']).name})"

    def answer(self, images: Sequence[np.ndarray], questions: Sequence[str]) -> list[str]:
        from PIL import Image

        return [
            self.pipeline({"image": Image.fromarray(image), "question": question})["text"]
            for image, question in zip(images, questions, strict=True)
        ]
