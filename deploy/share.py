"""A trained model in the formats other libraries load: timm's ``mobilenetv1_*`` and Hugging Face transformers'
``MobileNetV1ForImageClassification``.

Both hold a backbone with one linear head on its pooled features (``MobileNetClassifier``: classification, face
attributes, geolocation cells). Neither keeps the input normalisation in the weights: timm reads it from the
``pretrained_cfg`` (``mean`` / ``std`` in ``pretrained_cfg_overlay``), transformers from the image processor's
``preprocessor_config.json``, which the exported folder carries.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors.torch import save_file
from torch import Tensor

from mobilenets.backbone import MobileNetV1
from mobilenets.backbone.weights import TIMM_MODELS, TORCH_BN_EPSILON, to_hf_state_dict, to_timm_state_dict
from mobilenets.core.errors import SettingError
from mobilenets.core.io import replacing, write_text
from mobilenets.tasks.heads import MobileNetClassifier

__all__ = ["export_timm", "export_transformers", "label_names"]


def _classifier(task: Any) -> MobileNetV1:
    """The task's backbone with its linear head as the backbone's own classifier (a copy, in eval mode)."""
    model = getattr(task, "model", None)
    if not isinstance(model, MobileNetClassifier):
        raise SettingError(f"a {type(task).__name__} is not a backbone with one linear head, which is all timm's and "
                           f"transformers' MobileNet v1 classifiers hold (classification, face attributes, "
                           f"geolocation)")
    backbone = MobileNetV1(**{**model.backbone.config, "num_classes": model.head.out_features}).eval()
    state = {key: value for key, value in model.backbone.state_dict().items() if not key.startswith("classifier.")}
    backbone.load_state_dict({**state, "classifier.weight": model.head.weight, "classifier.bias": model.head.bias})
    return backbone


def _converted(task: Any, convert: Callable[[MobileNetV1], dict[str, Tensor]],
               library: str) -> tuple[MobileNetV1, dict[str, Tensor]]:
    """The task as a backbone with its classifier, and its weights in ``library``'s names (``convert``)."""
    backbone = _classifier(task)
    try:
        return backbone, convert(backbone)
    except ValueError as error:
        raise SettingError(f"{type(task).__name__} to {library}: {error}") from None


def label_names(task: Any, count: int) -> list[str]:
    """The output names the task records in its checkpoints (class or attribute names), else ``LABEL_i``."""
    for attribute in task.checkpoint_attributes:
        names = getattr(task, attribute, None)
        if isinstance(names, (list, tuple)) and len(names) == count and all(isinstance(n, str) for n in names):
            return list(names)
    return [f"LABEL_{index}" for index in range(count)]


def _statistics(backbone: MobileNetV1) -> tuple[list[float], list[float]]:
    return backbone.input_mean.flatten().tolist(), backbone.input_std.flatten().tolist()


def export_timm(task: Any, path: str | Path) -> dict[str, Any]:
    """Write ``task``'s weights as timm's ``mobilenetv1_100`` / ``_125`` state dict (``.safetensors``, else a
    ``torch.save`` file); returns the ``timm.create_model`` arguments that load it."""
    backbone, state_dict = _converted(task, to_timm_state_dict, "timm")
    path = Path(path)
    with replacing(path) as partial:
        if path.suffix == ".safetensors":
            save_file({key: value.contiguous() for key, value in state_dict.items()}, str(partial))
        else:
            torch.save(state_dict, partial)
    mean, std = _statistics(backbone)
    return {"model_name": TIMM_MODELS[backbone.alpha], "num_classes": backbone.num_classes, "pretrained": True,
            "pretrained_cfg_overlay": {"file": str(path), "num_classes": backbone.num_classes, "mean": mean,
                                       "std": std, "input_size": [3, task.hparams.resolution, task.hparams.resolution]}}


def export_transformers(task: Any, folder: str | Path) -> Path:
    """Write ``task`` as a ``MobileNetV1ForImageClassification`` folder (``config.json``, ``model.safetensors``,
    ``preprocessor_config.json``) that ``from_pretrained`` loads offline."""
    backbone, state_dict = _converted(task, to_hf_state_dict, "transformers")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    names = label_names(task, backbone.num_classes)
    resolution = task.hparams.resolution
    config = {
        "architectures": ["MobileNetV1ForImageClassification"], "model_type": "mobilenet_v1", "num_channels": 3,
        "image_size": resolution, "depth_multiplier": backbone.alpha, "min_depth": backbone.min_depth,
        "hidden_act": "relu6", "tf_padding": backbone.padding == "tf_same", "layer_norm_eps": TORCH_BN_EPSILON,
        "classifier_dropout_prob": backbone.drop_rate, "id2label": dict(enumerate(names)),
        "label2id": {name: index for index, name in enumerate(names)},
    }
    mean, std = _statistics(backbone)
    preprocessor = {"image_processor_type": "MobileNetV1ImageProcessor", "do_resize": True,
                    "size": {"shortest_edge": resolution}, "do_center_crop": True,
                    "crop_size": {"height": resolution, "width": resolution}, "do_rescale": True,
                    "rescale_factor": 1 / 255, "do_normalize": True, "image_mean": mean, "image_std": std}
    write_text(folder / "config.json", json.dumps(config, indent=2) + "\n")
    write_text(folder / "preprocessor_config.json", json.dumps(preprocessor, indent=2) + "\n")
    with replacing(folder / "model.safetensors") as partial:
        save_file({key: value.contiguous() for key, value in state_dict.items()}, str(partial),
                  metadata={"format": "pt"})
    return folder
