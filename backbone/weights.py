"""Backbone weights from local files only, in every format MobileNet v1 weights are published or trained in.

Nothing is downloaded: ``pretrained`` is always a path. The format is told from the file's content:

- TensorFlow (TF-slim) checkpoints of Google's release, ``mobilenet_v1_{alpha}_{res}.ckpt`` (``.index`` + data);
- Keras application files, ``mobilenet_{alpha}_{rows}_tf.h5`` (Keras 2 / legacy HDF5, whole model or weights
  only, as Keras 3's ``model.save("model.h5")`` also writes);
- Hugging Face transformers ``MobileNetV1`` safetensors (``model.safetensors``);
- timm ``mobilenetv1_*`` state dicts (``.pth``/``.bin``/``.safetensors``);
- the suite's own: ``save_backbone`` files (``.pth`` or ``.safetensors``), Lightning checkpoints of any task.

Every format ends as our state dict, including the ``input_mean`` / ``input_std`` buffers (TensorFlow's weights
expect inputs in [-1, 1]), plus the constructor arguments the weights need: TensorFlow-trained weights need
``padding="tf_same"``, and their batch-norm epsilon (0.001, ours 1e-5) is folded into the moving variance, which
gives the same outputs. Pickled files are read with ``weights_only`` (``mobilenets.core.checkpoint``).
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch
from torch import Tensor

from mobilenets.backbone.mobilenet import LAYERS, MobileNetV1
from mobilenets.backbone.tf_checkpoint import TFCheckpointReader, tf_checkpoint_prefix
from mobilenets.core.checkpoint import load_torch_file
from mobilenets.core.errors import SettingError
from mobilenets.core.io import replacing

__all__ = [
    "CHECKPOINT_FORMAT",
    "TF_MEAN",
    "TF_STD",
    "TIMM_MEAN",
    "TIMM_STD",
    "BackboneWeights",
    "convert_hf_state_dict",
    "convert_keras_h5",
    "convert_tf_checkpoint",
    "convert_timm_state_dict",
    "extract_backbone_state_dict",
    "load_backbone",
    "load_pretrained",
    "read_state_dict_file",
    "read_weights",
    "save_backbone",
    "to_hf_state_dict",
    "to_timm_state_dict",
]

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "mobilenets.backbone/1"
# timm's mobilenetv1_* ImageNet weights expect inputs scaled to [-1, 1].
TIMM_MEAN = (0.5, 0.5, 0.5)
TIMM_STD = (0.5, 0.5, 0.5)
# So do Google's TensorFlow weights (TF-slim's inception preprocessing; Keras' mobilenet.preprocess_input).
TF_MEAN = TIMM_MEAN
TF_STD = TIMM_STD
TF_BN_EPSILON = 1e-3
TORCH_BN_EPSILON = 1e-5

_TIMM_BLOCK = re.compile(r"^blocks\.(\d+)\.(\d+)\.(conv_dw|bn1|conv_pw|bn2)\.(.+)$")
_TIMM_PARTS = {"conv_dw": "dw.conv", "bn1": "dw.bn", "conv_pw": "pw.conv", "bn2": "pw.bn"}
_TIMM_STEM = {"conv_stem": "features.layer0.conv", "bn1": "features.layer0.bn", "classifier": "classifier"}
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_BLOCKS = [number for number, _, _ in LAYERS if number > 0]


@dataclass
class BackboneWeights:
    """A backbone state dict and what it needs from the model.

    Attributes:
        state_dict: our keys (``features.layer<N>...``, ``classifier.*`` when the file has a head, the input
            normalisation buffers).
        config: ``MobileNetV1`` arguments the weights fix (``alpha``, ``num_classes``, ``padding``...), as far
            as the file tells them.
        source: the format read, for messages.
    """

    state_dict: dict[str, Tensor]
    config: dict[str, Any] = field(default_factory=dict)
    source: str = "mobilenets"


# --- TensorFlow-trained weights: TF-slim checkpoints, Keras files, Hugging Face ports ---------------------------


def _tf_kernel(kernel: np.ndarray, depthwise: bool) -> Tensor:
    """TF's (h, w, in, out) conv kernel, or (h, w, in, multiplier) depthwise kernel, in torch's layout."""
    tensor = torch.from_numpy(np.ascontiguousarray(kernel, dtype=np.float32))
    if depthwise:
        height, width, channels, multiplier = tensor.shape
        return tensor.permute(2, 3, 0, 1).reshape(channels * multiplier, 1, height, width).contiguous()
    return tensor.permute(3, 2, 0, 1).contiguous()


def _batchnorm(prefix: str, gamma: Any, beta: Any, mean: Any, variance: Any, epsilon: float) -> dict[str, Tensor]:
    """Our BN entries; ``epsilon - 1e-5`` moves into the variance, so ``var + 1e-5`` equals theirs ``+ epsilon``."""
    as_tensor = lambda value: torch.as_tensor(np.asarray(value, dtype=np.float32))  # noqa: E731
    return {
        f"{prefix}.weight": as_tensor(gamma),
        f"{prefix}.bias": as_tensor(beta),
        f"{prefix}.running_mean": as_tensor(mean),
        f"{prefix}.running_var": as_tensor(variance) + (epsilon - TORCH_BN_EPSILON),
        f"{prefix}.num_batches_tracked": torch.tensor(0),
    }


def _head(weight: Tensor, bias: Tensor, keep_background: bool, path: Any) -> dict[str, Tensor]:
    """The classifier; a 1001-way TF head's class 0 (background) is dropped unless ``keep_background``."""
    if weight.shape[0] == 1001 and not keep_background:
        weight, bias = weight[1:], bias[1:]
        log.info("%s: dropped the background class of the 1001-way TensorFlow classifier (keep_background keeps it)",
                 path)
    return {"classifier.weight": weight.contiguous(), "classifier.bias": bias.contiguous()}


def _tf_family(state_dict: dict[str, Tensor], source: str, path: Any) -> BackboneWeights:
    """Finish a TF-trained state dict: input scaling to [-1, 1], and the config read off the shapes."""
    width = state_dict["features.layer13.pw.conv.weight"].shape[0]
    state_dict["input_mean"] = torch.tensor(TF_MEAN).view(1, -1, 1, 1)
    state_dict["input_std"] = torch.tensor(TF_STD).view(1, -1, 1, 1)
    num_classes = state_dict["classifier.weight"].shape[0] if "classifier.weight" in state_dict else 0
    config = {"alpha": width / LAYERS[-1][2], "num_classes": num_classes, "padding": "tf_same"}
    log.info("%s: %s weights, alpha %s, %d classes", path, source, config["alpha"], num_classes)
    return BackboneWeights(state_dict, config, source)


def _tf_layout(
    kernel: Callable[[str, bool], np.ndarray],
    batchnorm: Callable[[str], tuple],
    names: Mapping[str, str],
    head: tuple[np.ndarray, np.ndarray] | None,
    keep_background: bool,
    source: str,
    path: Any,
) -> BackboneWeights:
    """Assemble our state dict from TF-layout weights; ``names`` maps our unit (``layer0``, ``layer3.dw``...)
    to the file's, ``kernel(name, depthwise)`` and ``batchnorm(name)`` read them."""
    state_dict: dict[str, Tensor] = {}
    for unit, name in names.items():
        depthwise = unit.endswith(".dw")
        state_dict[f"features.{unit}.conv.weight"] = _tf_kernel(kernel(name, depthwise), depthwise)
        state_dict.update(_batchnorm(f"features.{unit}.bn", *batchnorm(name), epsilon=TF_BN_EPSILON))
    if head is not None:
        weight = torch.from_numpy(np.ascontiguousarray(head[0], dtype=np.float32)).reshape(-1, head[0].shape[-1]).T
        state_dict.update(_head(weight, torch.from_numpy(np.asarray(head[1], dtype=np.float32)), keep_background,
                                path))
    return _tf_family(state_dict, source, path)


def convert_tf_checkpoint(prefix: str | Path, keep_background: bool = False) -> BackboneWeights:
    """Google's TF-slim MobileNet v1 checkpoint (``MobilenetV1/Conv2d_0/weights``,
    ``MobilenetV1/Conv2d_N_depthwise/depthwise_weights``, ``.../BatchNorm/{gamma,beta,moving_mean,
    moving_variance}``, ``MobilenetV1/Logits/Conv2d_1c_1x1/{weights,biases}``), any alpha and resolution."""
    reader = TFCheckpointReader(prefix)
    scope = "MobilenetV1"
    if f"{scope}/Conv2d_0/weights" not in reader:
        raise ValueError(f"{reader.prefix}: not a TF-slim MobileNet v1 checkpoint (no {scope}/Conv2d_0/weights; "
                         f"it has {reader.names()[:5]})")
    names = {"layer0": f"{scope}/Conv2d_0"}
    for number in _BLOCKS:
        names[f"layer{number}.dw"] = f"{scope}/Conv2d_{number}_depthwise"
        names[f"layer{number}.pw"] = f"{scope}/Conv2d_{number}_pointwise"

    def kernel(name: str, depthwise: bool) -> np.ndarray:
        return reader.read(f"{name}/{'depthwise_weights' if depthwise else 'weights'}")

    def batchnorm(name: str) -> tuple:
        return tuple(reader.read(f"{name}/BatchNorm/{part}")
                     for part in ("gamma", "beta", "moving_mean", "moving_variance"))

    logits = f"{scope}/Logits/Conv2d_1c_1x1"
    head = (reader.read(f"{logits}/weights"), reader.read(f"{logits}/biases")) if f"{logits}/weights" in reader \
        else None
    return _tf_layout(kernel, batchnorm, names, head, keep_background, "TF-slim checkpoint", reader.prefix)


def _keras_weights(path: Path) -> dict[str, dict[str, np.ndarray]]:
    """{layer: {weight: array}} from a Keras HDF5 file in the layout of the published files (Keras 2's
    ``layer_names`` / ``weight_names`` attributes; a whole model keeps them under ``model_weights``)."""
    import h5py

    layers: dict[str, dict[str, np.ndarray]] = {}
    with h5py.File(path, "r") as file:
        root = file["model_weights"] if "model_weights" in file else file
        if "layer_names" not in root.attrs:
            hint = (" It is a Keras 3 .weights.h5, whose layers are named by type (conv2d_4...), not MobileNet's "
                    "names: save the model with model.save('model.h5') instead." if "layers" in root else "")
            raise ValueError(f"{path}: an HDF5 file, but not Keras application weights (no layer_names).{hint}")
        for layer in root.attrs["layer_names"]:
            layer = layer.decode() if isinstance(layer, bytes) else layer
            group = root[layer]
            weights = {}
            for name in group.attrs.get("weight_names", []):
                name = name.decode() if isinstance(name, bytes) else name
                short = name.rsplit("/", 1)[-1].split(":")[0].replace("depthwise_kernel", "kernel")
                weights[short] = np.asarray(group[name])
            layers[layer] = weights
    return layers


def convert_keras_h5(path: str | Path, keep_background: bool = False) -> BackboneWeights:
    """``keras.applications.MobileNet`` weights (``conv1``, ``conv1_bn``, ``conv_dw_N``, ``conv_dw_N_bn``,
    ``conv_pw_N``, ``conv_pw_N_bn``, ``conv_preds``), any alpha and resolution."""
    path = Path(path)
    layers = _keras_weights(path)
    if "conv1" not in layers or "conv_dw_1" not in layers:
        raise ValueError(f"{path}: not a Keras MobileNet (v1) file: no conv1 / conv_dw_1 layers (it has "
                         f"{list(layers)[:6]})")
    names = {"layer0": "conv1"}
    for number in _BLOCKS:
        names[f"layer{number}.dw"] = f"conv_dw_{number}"
        names[f"layer{number}.pw"] = f"conv_pw_{number}"

    def kernel(name: str, depthwise: bool) -> np.ndarray:
        return layers[name]["kernel"]

    def batchnorm(name: str) -> tuple:
        found = layers[f"{name}_bn"]
        return tuple(found[part] for part in ("gamma", "beta", "moving_mean", "moving_variance"))

    preds = layers.get("conv_preds")
    head = (preds["kernel"], preds["bias"]) if preds else None
    return _tf_layout(kernel, batchnorm, names, head, keep_background, "Keras", path)


_HF_LAYER = re.compile(r"^(?:mobilenet_v1\.)?layer\.(\d+)\.(convolution|normalization)\.(.+)$")
_HF_STEM = re.compile(r"^(?:mobilenet_v1\.)?conv_stem\.(convolution|normalization)\.(.+)$")


def convert_hf_state_dict(
    state_dict: Mapping[str, Tensor], epsilon: float = TF_BN_EPSILON, keep_background: bool = False, path: Any = ""
) -> BackboneWeights:
    """Hugging Face transformers ``MobileNetV1Model`` / ``MobileNetV1ForImageClassification`` weights (its
    ``layer.{2i}`` is our ``layer{i+1}.dw``, ``layer.{2i+1}`` the ``.pw``); ``epsilon``: its ``layer_norm_eps``."""
    converted: dict[str, Tensor] = {}
    for key, value in state_dict.items():
        if match := _HF_STEM.match(key):
            unit, part, rest = "layer0", *match.groups()
        elif match := _HF_LAYER.match(key):
            index, part, rest = match.groups()
            unit = f"layer{int(index) // 2 + 1}.{'dw' if int(index) % 2 == 0 else 'pw'}"
        elif key in ("classifier.weight", "classifier.bias"):
            continue
        else:
            raise ValueError(f"{path}: not a Hugging Face MobileNetV1 state dict: unexpected key {key!r}")
        if part == "normalization" and rest == "running_var":
            value = value + (epsilon - TORCH_BN_EPSILON)
        converted[f"features.{unit}.{'conv' if part == 'convolution' else 'bn'}.{rest}"] = value
    if "classifier.weight" in state_dict:
        converted.update(_head(state_dict["classifier.weight"], state_dict["classifier.bias"], keep_background, path))
    return _tf_family(converted, "Hugging Face", path)


def _hf_epsilon(path: Path) -> float:
    """``layer_norm_eps`` from the ``config.json`` beside a Hugging Face weights file (0.001 if there is none)."""
    config = path.with_name("config.json")
    if config.is_file():
        return float(json.loads(config.read_text()).get("layer_norm_eps", TF_BN_EPSILON))
    return TF_BN_EPSILON


# --- timm and the suite's own ------------------------------------------------------------------------------------


def convert_timm_state_dict(
    state_dict: Mapping[str, Tensor], mean: tuple = TIMM_MEAN, std: tuple = TIMM_STD
) -> dict[str, Tensor]:
    """Rename a timm ``mobilenetv1_100`` / ``mobilenetv1_125`` state dict to ours.

    timm numbers its separable blocks by stage (``blocks.3.4``); ours use the paper's layer numbers,
    which are the blocks counted in order from 1.
    """
    blocks = sorted({(int(m[1]), int(m[2])) for key in state_dict if (m := _TIMM_BLOCK.match(key))})
    layer_of = {block: number for number, block in enumerate(blocks, start=1)}
    converted: dict[str, Tensor] = {}
    unknown = []
    for key, value in state_dict.items():
        if match := _TIMM_BLOCK.match(key):
            stage, block, part, rest = match.groups()
            layer = layer_of[(int(stage), int(block))]
            converted[f"features.layer{layer}.{_TIMM_PARTS[part]}.{rest}"] = value
            continue
        head, _, rest = key.partition(".")
        if head in _TIMM_STEM:
            converted[f"{_TIMM_STEM[head]}.{rest}"] = value
        else:
            unknown.append(key)
    if unknown:
        raise ValueError(f"not a timm MobileNet v1 state dict: unexpected keys {unknown[:10]}")
    reference = next(iter(converted.values()))
    converted["input_mean"] = torch.tensor(mean, dtype=reference.dtype).view(1, -1, 1, 1)
    converted["input_std"] = torch.tensor(std, dtype=reference.dtype).view(1, -1, 1, 1)
    return converted


#: timm's models of the family by width, and its separable blocks per stage (``blocks.<stage>.<block>``)
TIMM_MODELS = {1.0: "mobilenetv1_100", 1.25: "mobilenetv1_125"}
_TIMM_STAGES = (1, 2, 2, 6, 2)


def _separable_layers(model: MobileNetV1, library: str) -> None:
    """Refuse, in one line, a backbone that ``library``'s MobileNet v1 cannot hold."""
    config = model.config
    differences = [f"{name}={config[name]!r}" for name, value in
                   (("separable", True), ("shallow", False), ("output_stride", 32), ("activation", "relu6"),
                    ("in_chans", 3)) if config[name] != value]
    if differences:
        raise ValueError(f"{library}'s MobileNet v1 has 13 separable layers, output stride 32, relu6 and RGB input; "
                         f"this backbone has {', '.join(differences)}")


def to_timm_state_dict(model: MobileNetV1) -> dict[str, Tensor]:
    """``model``'s weights (its classifier too, if it has one) keyed as timm's ``mobilenetv1_100`` / ``_125``: the
    inverse of ``convert_timm_state_dict``. timm's input normalisation is its ``pretrained_cfg``'s, not a weight.

    Raises:
        ValueError: a backbone timm's layout cannot hold (another width, ``tf_same`` padding, a variant).
    """
    _separable_layers(model, "timm")
    if model.alpha not in TIMM_MODELS or model.padding != "symmetric":
        raise ValueError(f"timm's MobileNet v1 comes at alpha {' and '.join(map(str, TIMM_MODELS))} with symmetric "
                         f"padding; this backbone has alpha {model.alpha}, padding {model.padding!r}")
    blocks = [(stage, block) for stage, count in enumerate(_TIMM_STAGES) for block in range(count)]
    parts = {ours: theirs for theirs, ours in _TIMM_PARTS.items()}
    stem = {ours: theirs for theirs, ours in _TIMM_STEM.items()}
    converted = {}
    for key, value in model.state_dict().items():
        if key in ("input_mean", "input_std"):
            continue
        if match := re.match(r"^features\.layer(\d+)\.(dw\.conv|dw\.bn|pw\.conv|pw\.bn)\.(.+)$", key):
            stage, block = blocks[int(match[1]) - 1]
            converted[f"blocks.{stage}.{block}.{parts[match[2]]}.{match[3]}"] = value
        else:
            module, _, rest = key.rpartition(".")
            converted[f"{stem[module]}.{rest}"] = value
    return converted


def to_hf_state_dict(model: MobileNetV1) -> dict[str, Tensor]:
    """``model``'s weights (its classifier too, if it has one) keyed as Hugging Face's
    ``MobileNetV1ForImageClassification`` (our ``layer{i}.dw`` / ``.pw`` are its ``layer.{2i-2}`` / ``{2i-1}``):
    the inverse of ``convert_hf_state_dict``, for a model with ``layer_norm_eps`` 1e-5 (ours).

    Raises:
        ValueError: a variant the Hugging Face model cannot hold (shallow, full convolutions, dilation, relu).
    """
    _separable_layers(model, "Hugging Face")
    converted = {}
    for key, value in model.state_dict().items():
        if key in ("input_mean", "input_std"):
            continue
        part = {"conv": "convolution", "bn": "normalization"}
        if match := re.match(r"^features\.layer0\.(conv|bn)\.(.+)$", key):
            converted[f"mobilenet_v1.conv_stem.{part[match[1]]}.{match[2]}"] = value
        elif match := re.match(r"^features\.layer(\d+)\.(dw|pw)\.(conv|bn)\.(.+)$", key):
            index = 2 * (int(match[1]) - 1) + (match[2] == "pw")
            converted[f"mobilenet_v1.layer.{index}.{part[match[3]]}.{match[4]}"] = value
        else:
            converted[key] = value  # classifier.weight / .bias: the same names
    return converted


def extract_backbone_state_dict(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Take the backbone's entries out of a task's state dict (keys ``...backbone.<ours>``)."""
    extracted = {}
    for key, value in state_dict.items():
        prefix, found, rest = key.partition("backbone.")
        if found and (not prefix or prefix.endswith(".")):
            extracted[rest] = value
    return extracted


def read_state_dict_file(path: str | Path, trust: bool | None = None) -> Mapping[str, Any]:
    """The mapping stored in a local ``.safetensors`` or pickled (``.pth``/``.ckpt``/``.bin``) file, read without
    running code unless ``trust`` (``mobilenets.core.checkpoint.load_torch_file``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path} (weights must be a local file path)")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        raw: Any = load_file(str(path))
    else:
        raw = load_torch_file(path, trust)
    if not isinstance(raw, Mapping):
        raise ValueError(f"{path}: expected a checkpoint or state dict, found {type(raw).__name__}")
    return raw


def _safetensors_metadata(path: Path) -> dict[str, str]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as file:
        return file.metadata() or {}


def _lightning_backbone_config(raw: Mapping[str, Any]) -> dict[str, Any]:
    """The ``padding`` a task checkpoint's backbone was built with (older checkpoints: symmetric), and its
    ``alpha`` where recorded."""
    backbone = raw.get("hyper_parameters", {}).get("backbone")
    recorded = backbone.get if isinstance(backbone, Mapping) else lambda name: getattr(backbone, name, None)
    alpha = recorded("alpha")
    return {"padding": recorded("padding") or "symmetric", **({"alpha": alpha} if alpha is not None else {})}


def read_weights(path: str | Path, keep_background: bool = False, trust: bool | None = None) -> BackboneWeights:
    """Read any supported weights file (see the module docstring), telling the format from its content.

    Args:
        path: the file; for a TF checkpoint its prefix, ``.index`` or data file.
        keep_background: keep class 0 of a 1001-way TensorFlow classifier (dropped by default, leaving
            ImageNet's 1000 classes in the order of sorted WordNet ids).
        trust: unpickle a ``.pth``/``.ckpt`` even if that runs code it carries (see ``load_torch_file``).
    """
    path = Path(path)
    if (prefix := tf_checkpoint_prefix(path)) is not None:
        return convert_tf_checkpoint(prefix, keep_background)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path} (weights must be a local file path)")
    with open(path, "rb") as file:
        if file.read(len(_HDF5_SIGNATURE)) == _HDF5_SIGNATURE:
            return convert_keras_h5(path, keep_background)
    raw = read_state_dict_file(path, trust)
    if path.suffix == ".safetensors":
        metadata = _safetensors_metadata(path)
        if metadata.get("format") == CHECKPOINT_FORMAT:
            return BackboneWeights(dict(raw), json.loads(metadata["config"]))
    if raw.get("format") == CHECKPOINT_FORMAT:
        return BackboneWeights(dict(raw["state_dict"]), dict(raw["config"]))
    if "state_dict" in raw and isinstance(raw["state_dict"], Mapping):  # a Lightning checkpoint
        state_dict = extract_backbone_state_dict(raw["state_dict"])
        if not state_dict:
            raise ValueError(f"{path}: Lightning checkpoint has no 'backbone.' weights")
        return BackboneWeights(state_dict, _lightning_backbone_config(raw), "Lightning checkpoint")
    if any(_HF_STEM.match(key) for key in raw):
        return convert_hf_state_dict(raw, _hf_epsilon(path), keep_background, path)
    if "conv_stem.weight" in raw:
        try:
            return BackboneWeights(convert_timm_state_dict(raw), {"padding": "symmetric"}, "timm")
        except ValueError as error:
            raise ValueError(f"{path}: {error}") from None
    if "features.layer0.conv.weight" in raw:
        return BackboneWeights(dict(raw))
    backbone = extract_backbone_state_dict(raw)
    if backbone:
        return BackboneWeights(backbone)
    raise ValueError(f"{path}: unrecognised weights; keys start with {list(raw)[:5]}")


def load_pretrained(model: MobileNetV1, path: str | Path, trust: bool | None = None) -> None:
    """Load backbone weights from ``path`` into ``model``, ignoring a classifier that does not fit.

    Raises:
        ValueError: naming the file and what to change, when the weights need another padding, or belong to a
            different architecture (other alpha, variant, ...: missing, unexpected and mis-shaped keys listed).
    """
    weights = read_weights(path, trust=trust)
    padding = weights.config.get("padding")
    if padding is not None and padding != model.padding:
        raise ValueError(f"{path}: these {weights.source} weights were trained with padding={padding!r}, the model "
                         f"has {model.padding!r}; set backbone.padding: {padding}")
    state_dict = weights.state_dict
    own = model.state_dict()
    head_keys = [key for key in state_dict if key.startswith("classifier.")]
    head_fits = all(key in own and own[key].shape == state_dict[key].shape for key in head_keys)
    if head_keys and not head_fits:
        log.info("%s: ignoring the old classifier %s", path, head_keys)
        state_dict = {key: value for key, value in state_dict.items() if key not in head_keys}
    own_keys = {key for key in own if head_fits or not key.startswith("classifier.")}
    missing = sorted(own_keys - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    mismatched = [
        f"{key}: file {tuple(state_dict[key].shape)} vs model {tuple(own[key].shape)}"
        for key in sorted(own_keys & set(state_dict))
        if state_dict[key].shape != own[key].shape
    ]
    if missing or unexpected or mismatched:
        alpha = weights.config.get("alpha")
        fix = (f"the file's alpha is {alpha}: set backbone.alpha: {alpha}" if alpha not in (None, model.alpha)
               else "give weights of this architecture")
        raise SettingError(
            f"{path} does not fit this backbone (alpha={model.alpha}, layers {model.layer_numbers[0]}.."
            f"{model.layer_numbers[-1]}), {fix}; missing keys: {_first(missing, 3)}; unexpected keys: "
            f"{_first(unexpected, 3)}; shape mismatches: {_first(mismatched, 3)}"
        )
    model.load_state_dict(state_dict, strict=False)


def _first(items: list[str], shown: int = 6) -> str:
    more = f" ... and {len(items) - shown} more" if len(items) > shown else ""
    return f"{items[:shown]}{more}"


def save_backbone(model: MobileNetV1, path: str | Path) -> Path:
    """Save weights with the constructor arguments, so ``load_backbone`` rebuilds the model alone: a
    ``.safetensors`` file (the config in its metadata) or, for any other name, a ``torch.save`` file."""
    path = Path(path)
    with replacing(path) as partial:
        if path.suffix == ".safetensors":
            from safetensors.torch import save_file

            state_dict = {key: value.contiguous() for key, value in model.state_dict().items()}
            save_file(state_dict, str(partial),
                      metadata={"format": CHECKPOINT_FORMAT, "config": json.dumps(model.config)})
        else:
            torch.save({"format": CHECKPOINT_FORMAT, "config": dict(model.config), "state_dict": model.state_dict()},
                       partial)
    return path


def load_backbone(path: str | Path, keep_background: bool = False, trust: bool | None = None) -> MobileNetV1:
    """The whole model a weights file describes: ``save_backbone`` files, and the TensorFlow-trained formats
    (TF-slim, Keras, Hugging Face), whose shapes tell the model; the weights must fill it exactly."""
    weights = read_weights(path, keep_background, trust)
    if weights.source == "mobilenets" and not weights.config:
        raise ValueError(f"{path}: not a file written by save_backbone (format {CHECKPOINT_FORMAT}), nor TensorFlow "
                         f"weights, so the model it belongs to is unknown; use load_pretrained with a model")
    if "alpha" not in weights.config:
        raise ValueError(f"{path}: the {weights.source} file does not say which model it holds; build the model and "
                         f"use load_pretrained")
    model = MobileNetV1(**weights.config)
    try:
        model.load_state_dict(weights.state_dict)
    except RuntimeError as error:
        raise ValueError(f"{path}: the weights do not fill MobileNetV1({weights.config}): {error}") from None
    return model
