"""The published MobileNet v1 implementations, built here with random weights and saved in their published
layouts by their own libraries, to check the converters against (``mobilenets weights check``, the tests).

- Keras: ``keras.applications.MobileNet`` (Keras 3 on the torch backend), saved as the Keras 2 weight file the
  ``mobilenet_{alpha}_{rows}_tf.h5`` downloads are;
- TF-slim: those Keras weights under TF-slim's variable names with a 1001-way head, written by TensorFlow's own
  checkpoint writer (``SaveV2``) as ``mobilenet_v1_{alpha}_{res}.ckpt`` is;
- Hugging Face: ``transformers.MobileNetV1ForImageClassification`` (1001 labels, as Google's ports), saved with
  ``save_pretrained``.

The three libraries are the ``dev`` extra's; nothing here is imported by the suite itself. Both sides compute in
float64, so a difference is the conversion's, not float32 rounding through 28 layers.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch

from mobilenets.backbone.weights import load_backbone

__all__ = ["FORMATS", "conversion_checks", "hf_reference", "keras_reference", "save_keras_h5", "save_tf_slim"]


def _keras() -> Any:
    os.environ.setdefault("KERAS_BACKEND", "torch")
    _tensorflow()  # Keras' HDF5 saving imports it
    import keras

    return keras


def _tensorflow() -> Any:
    """TensorFlow, imported after Triton where Triton is installed: both bundle LLVM, and Triton loaded after
    TensorFlow crashes the process (as importing transformers' torch models does)."""
    import importlib.util

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if importlib.util.find_spec("triton") is not None:
        import triton  # noqa: F401
    import tensorflow

    return tensorflow


@contextlib.contextmanager
def _float64_keras() -> Iterator[Any]:
    keras = _keras()
    previous = keras.config.floatx()
    keras.config.set_floatx("float64")
    try:
        yield keras
    finally:
        keras.config.set_floatx(previous)


def _uniform(rng: np.random.Generator, shape: tuple, low: float, high: float) -> np.ndarray:
    return rng.uniform(low, high, shape)


def keras_reference(alpha: float, resolution: int, seed: int = 0) -> Callable[[torch.Tensor], torch.Tensor]:
    """``keras.applications.MobileNet`` with random BN statistics and head bias (defaults would hide a mis-mapped
    BN), as a function of NCHW images -> logits; its ``model`` attribute is the Keras model."""
    with _float64_keras() as keras:
        keras.utils.set_random_seed(seed)
        model = keras.applications.MobileNet(input_shape=(resolution, resolution, 3), alpha=alpha, weights=None,
                                             classifier_activation=None)
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if layer.name.endswith("_bn"):
            shape = layer.get_weights()[0].shape
            layer.set_weights([_uniform(rng, shape, 0.5, 1.5), _uniform(rng, shape, -0.2, 0.2),
                               _uniform(rng, shape, -0.2, 0.2), _uniform(rng, shape, 0.1, 1.0)])
        elif layer.name == "conv_preds":
            kernel, bias = layer.get_weights()
            layer.set_weights([kernel, _uniform(rng, bias.shape, -1, 1)])

    def logits(images: torch.Tensor) -> torch.Tensor:
        output = model(images.double().permute(0, 2, 3, 1).numpy(), training=False)
        return torch.from_numpy(np.asarray(keras.ops.convert_to_numpy(output)))

    logits.model = model  # type: ignore[attr-defined]
    return logits


def save_keras_h5(reference: Any, path: str | Path) -> Path:
    """The Keras model's weights as a Keras 2 weight file (``layer_names`` / ``weight_names``), Keras' writer."""
    import h5py
    from keras.src.legacy.saving import legacy_h5_format

    with h5py.File(path, "w") as file:
        legacy_h5_format.save_weights_to_hdf5_group(file, reference.model)
    return Path(path)


def save_tf_slim(reference: Any, prefix: str | Path, seed: int = 0) -> Path:
    """The Keras reference's weights under TF-slim's names, in a checkpoint TensorFlow writes, with the 1001-way
    head (a background class first) and the optimizer slots and step counter real checkpoints carry."""
    tf = _tensorflow()
    model = reference.model
    names, values = ["global_step"], [np.array(1000, np.int64)]

    def add(scope: str, layer: str) -> None:
        kernel = model.get_layer(layer).get_weights()[0].astype(np.float32)
        kind = "depthwise_weights" if "_dw_" in layer else "weights"
        names.extend([f"MobilenetV1/{scope}/{kind}", f"MobilenetV1/{scope}/{kind}/RMSProp"])
        values.extend([kernel, np.zeros_like(kernel)])
        for part, value in zip(("gamma", "beta", "moving_mean", "moving_variance"),
                               model.get_layer(f"{layer}_bn").get_weights()):
            names.append(f"MobilenetV1/{scope}/BatchNorm/{part}")
            values.append(value.astype(np.float32))

    add("Conv2d_0", "conv1")
    for number in range(1, 14):
        add(f"Conv2d_{number}_depthwise", f"conv_dw_{number}")
        add(f"Conv2d_{number}_pointwise", f"conv_pw_{number}")
    kernel, bias = (value.astype(np.float32) for value in model.get_layer("conv_preds").get_weights())
    background = np.random.default_rng(seed).normal(0, 0.05, kernel.shape[:3] + (1,)).astype(np.float32)
    names.extend(["MobilenetV1/Logits/Conv2d_1c_1x1/weights", "MobilenetV1/Logits/Conv2d_1c_1x1/biases"])
    values.extend([np.concatenate([background, kernel], axis=-1), np.concatenate([[0.5], bias]).astype(np.float32)])
    tf.raw_ops.SaveV2(prefix=str(prefix), tensor_names=names, shape_and_slices=[""] * len(names), tensors=values)
    return Path(prefix)


def hf_reference(alpha: float, resolution: int, seed: int = 0) -> Callable[[torch.Tensor], torch.Tensor]:
    """``transformers.MobileNetV1ForImageClassification`` (1001 labels, TF padding, BN epsilon 0.001) with random
    BN statistics, as a function of NCHW images -> logits; its ``model`` attribute is the transformers model."""
    import transformers

    torch.manual_seed(seed)
    config = transformers.MobileNetV1Config(depth_multiplier=alpha, image_size=resolution, num_labels=1001)
    model = transformers.MobileNetV1ForImageClassification(config).eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.1, 1.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)

    def logits(images: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return model.double()(pixel_values=images.double()).logits

    logits.model = model  # type: ignore[attr-defined]
    return logits


def _published_file(name: str, alpha: float, resolution: int, folder: Path) -> tuple[Callable, Path, slice]:
    """(the reference's logits, its file in the published layout, the logit columns ImageNet's 1000 classes are)."""
    if name == "keras":
        reference = keras_reference(alpha, resolution)
        return reference, save_keras_h5(reference, folder / f"mobilenet_{alpha}_{resolution}_tf.h5"), slice(None)
    if name == "tf-slim":
        reference = keras_reference(alpha, resolution)
        return reference, save_tf_slim(reference, folder / f"mobilenet_v1_{alpha}_{resolution}.ckpt"), slice(None)
    import transformers

    transformers.utils.logging.disable_progress_bar()
    reference = hf_reference(alpha, resolution)
    reference.model.save_pretrained(folder / "hf")
    return reference, folder / "hf" / "model.safetensors", slice(1, None)


FORMATS = ("keras", "tf-slim", "hugging-face")


def conversion_checks(
    pairs: tuple[tuple[float, int], ...] = ((1.0, 224), (0.75, 192), (0.5, 160), (0.25, 128)),
    formats: tuple[str, ...] = FORMATS,
    folder: str | Path | None = None,
) -> list[dict[str, Any]]:
    """For each format and (alpha, resolution): build the reference, save it in the published layout, convert it
    with ``load_backbone``, and compare logits on the same random images: ``max_abs_diff`` over ImageNet's 1000."""
    import tempfile

    rows = []
    with tempfile.TemporaryDirectory(dir=folder) as scratch:
        for name in formats:
            for alpha, resolution in pairs:
                where = Path(scratch) / f"{name}-{alpha}-{resolution}"
                where.mkdir()
                reference, path, columns = _published_file(name, alpha, resolution, where)
                images = torch.rand(2, 3, resolution, resolution, generator=torch.Generator().manual_seed(0),
                                    dtype=torch.float64) * 2 - 1
                with torch.no_grad():
                    ours = load_backbone(path).eval().double()(images)
                rows.append(dict(format=name, alpha=alpha, resolution=resolution, file=path.name,
                                 max_abs_diff=float((ours - reference(images)[:, columns]).abs().max())))
    return rows
