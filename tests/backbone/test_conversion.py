"""Published MobileNet v1 weights convert exactly: each reference model (Keras 3 on the torch backend, Hugging Face
transformers, TF-slim's variables written by TensorFlow itself) is built here with random weights, saved in its
published layout by its own library, converted, and must give the reference's logits (within 1e-4; both sides
compute in float64, so the check sees the conversion, not float32 rounding through 28 layers)."""

import os

os.environ.setdefault("KERAS_BACKEND", "torch")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from mobilenets.backbone import MobileNetV1, load_pretrained, profile_model  # noqa: E402
from mobilenets.backbone.weights import load_backbone, read_weights, save_backbone  # noqa: E402

keras = pytest.importorskip("keras")


@pytest.fixture(autouse=True)
def _float64_keras():
    keras.config.set_floatx("float64")
    yield
    keras.config.set_floatx("float32")


def _random(shape, rng, low=0.5, high=1.5):
    return rng.uniform(low, high, shape).astype(np.float32)


def _keras_reference(alpha: float, resolution: int, seed: int = 0):
    """keras.applications.MobileNet with random BN statistics and head bias (defaults would hide a mis-mapping)."""
    keras.utils.set_random_seed(seed)
    model = keras.applications.MobileNet(input_shape=(resolution, resolution, 3), alpha=alpha, weights=None,
                                         classifier_activation=None)
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if layer.name.endswith("_bn"):
            channels = layer.get_weights()[0].shape
            layer.set_weights([_random(channels, rng), _random(channels, rng, -0.2, 0.2),
                               _random(channels, rng, -0.2, 0.2), _random(channels, rng, 0.1, 1.0)])
        elif layer.name == "conv_preds":
            kernel, bias = layer.get_weights()
            layer.set_weights([kernel, _random(bias.shape, rng, -1, 1)])
    return model


def _keras_logits(model, images: torch.Tensor) -> torch.Tensor:
    nhwc = images.permute(0, 2, 3, 1).numpy()
    return torch.from_numpy(keras.ops.convert_to_numpy(model(nhwc, training=False)))


def _our_logits(path, images: torch.Tensor, **kwargs) -> torch.Tensor:
    model = load_backbone(path, **kwargs).eval().double()
    with torch.no_grad():
        return model(images)


def _images(resolution: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(2, 3, resolution, resolution, generator=generator, dtype=torch.float64) * 2 - 1


@pytest.mark.parametrize("alpha,resolution", [(0.25, 128), (0.5, 160), (0.75, 192), (1.0, 224)])
def test_keras_application_files_give_keras_logits(alpha, resolution, tmp_path):
    import h5py
    from keras.src.legacy.saving import legacy_h5_format

    reference = _keras_reference(alpha, resolution)
    images = _images(resolution)
    expected = _keras_logits(reference, images)
    # The published mobilenet_{alpha}_{rows}_tf.h5 files are Keras 2 weight files: this is Keras' writer of them.
    published = tmp_path / f"mobilenet_{alpha}_{resolution}_tf.h5"
    with h5py.File(published, "w") as file:
        legacy_h5_format.save_weights_to_hdf5_group(file, reference)
    actual = _our_logits(published, images)
    assert actual.shape == (2, 1000)
    assert (actual - expected).abs().max() < 1e-4
    if alpha == 0.5:  # a whole model saved by Keras 3 as HDF5 reads the same; its .weights.h5 is refused clearly
        reference.save(tmp_path / "model.h5")
        assert (_our_logits(tmp_path / "model.h5", images) - expected).abs().max() < 1e-4
        reference.save_weights(tmp_path / "model.weights.h5")
        with pytest.raises(ValueError, match=r"model.weights.h5: .*Keras 3 .weights.h5.*model.save\('model.h5'\)"):
            read_weights(tmp_path / "model.weights.h5")


def _write_tf_slim(reference, prefix, rng) -> np.ndarray:
    """The Keras reference's weights under TF-slim's variable names, in a checkpoint TensorFlow writes, with a
    1001-way head (background first) and the extra variables real checkpoints hold; returns the background row."""
    tf = pytest.importorskip("tensorflow")
    names, values = ["global_step"], [np.array(1000, np.int64)]

    def add(scope, layer, bn):
        kernel = reference.get_layer(layer).get_weights()[0]
        kind = "depthwise_weights" if "_dw_" in layer else "weights"
        names.extend([f"MobilenetV1/{scope}/{kind}", f"MobilenetV1/{scope}/{kind}/RMSProp"])
        values.extend([kernel, np.zeros_like(kernel)])
        for part, value in zip(("gamma", "beta", "moving_mean", "moving_variance"), reference.get_layer(bn).get_weights()):
            names.append(f"MobilenetV1/{scope}/BatchNorm/{part}")
            values.append(value)

    add("Conv2d_0", "conv1", "conv1_bn")
    for number in range(1, 14):
        add(f"Conv2d_{number}_depthwise", f"conv_dw_{number}", f"conv_dw_{number}_bn")
        add(f"Conv2d_{number}_pointwise", f"conv_pw_{number}", f"conv_pw_{number}_bn")
    kernel, bias = reference.get_layer("conv_preds").get_weights()
    background_kernel = rng.normal(0, 0.05, kernel.shape[:3] + (1,)).astype(np.float32)
    names.extend(["MobilenetV1/Logits/Conv2d_1c_1x1/weights", "MobilenetV1/Logits/Conv2d_1c_1x1/biases"])
    values.extend([np.concatenate([background_kernel, kernel], axis=-1), np.concatenate([[0.5], bias]).astype(np.float32)])
    tf.raw_ops.SaveV2(prefix=str(prefix), tensor_names=names, shape_and_slices=[""] * len(names), tensors=values)
    return background_kernel


@pytest.mark.parametrize("alpha,resolution", [(0.25, 128), (1.0, 224)])
def test_tf_slim_checkpoints_give_the_reference_logits(alpha, resolution, tmp_path):
    reference = _keras_reference(alpha, resolution, seed=1)
    images = _images(resolution, seed=1)
    expected = _keras_logits(reference, images)
    prefix = tmp_path / f"mobilenet_v1_{alpha}_{resolution}.ckpt"
    _write_tf_slim(reference, prefix, np.random.default_rng(1))
    for named_as in (prefix, f"{prefix}.index", f"{prefix}.data-00000-of-00001"):
        actual = _our_logits(named_as, images)
        assert actual.shape == (2, 1000)  # background dropped: ImageNet's 1000 classes
        assert (actual - expected).abs().max() < 1e-4
    kept = _our_logits(prefix, images, keep_background=True)
    assert kept.shape == (2, 1001) and torch.equal(kept[:, 1:], _our_logits(prefix, images))


@pytest.mark.parametrize("alpha,resolution", [(0.5, 160), (0.75, 223)])  # 223: odd sizes, TF pads bottom/right
def test_hugging_face_safetensors_give_transformers_logits(alpha, resolution, tmp_path):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.MobileNetV1Config(depth_multiplier=alpha, image_size=resolution, num_labels=1001)
    reference = transformers.MobileNetV1ForImageClassification(config).eval().double()
    for module in reference.modules():  # random statistics, so that epsilon and the BN mapping matter
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.1, 1.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.2, 0.2)
    images = _images(resolution, seed=2)
    with torch.no_grad():
        expected = reference(pixel_values=images).logits
    reference.float().save_pretrained(tmp_path / "hf")
    actual = _our_logits(tmp_path / "hf" / "model.safetensors", images, keep_background=True)
    assert (actual - expected).abs().max() < 1e-4
    assert torch.equal(_our_logits(tmp_path / "hf" / "model.safetensors", images), actual[:, 1:])


def test_converted_weights_carry_padding_and_tf_preprocessing(tmp_path):
    reference = _keras_reference(0.25, 128, seed=3)
    reference.save(tmp_path / "keras.h5")
    weights = read_weights(tmp_path / "keras.h5")
    assert weights.config == {"alpha": 0.25, "num_classes": 1000, "padding": "tf_same"}
    converted = save_backbone(load_backbone(tmp_path / "keras.h5"), tmp_path / "ours.safetensors")
    model = load_backbone(converted)
    assert model.padding == "tf_same" and model.input_mean.flatten().tolist() == [0.5, 0.5, 0.5]
    # into a backbone: the padding must be asked for, and the error says how
    with pytest.raises(ValueError, match="set backbone.padding: tf_same"):
        load_pretrained(MobileNetV1(alpha=0.25), converted)
    target = MobileNetV1(alpha=0.25, num_classes=5, padding="tf_same")
    load_pretrained(target, converted)  # the 1000-way head does not fit and is left out
    assert torch.equal(target.features.layer5.pw.conv.weight, model.features.layer5.pw.conv.weight)


def test_tf_same_padding_folds_and_exports_at_any_size():
    """Folding BN (torch.fx) and ONNX export with dynamic height/width keep TF's padding rule, odd sizes too."""
    import onnxruntime

    from mobilenets.backbone import fold_batchnorm
    from mobilenets.deploy.export import trace_to_onnx

    model = MobileNetV1(alpha=0.25, padding="tf_same").eval()
    session = onnxruntime.InferenceSession(trace_to_onnx(model, 128, ["logits"], dynamic_size=True).SerializeToString())
    folded = fold_batchnorm(model)
    for size in (128, 97):
        images = torch.rand(1, 3, size, size)
        with torch.no_grad():
            expected = model(images)
            assert (folded(images) - expected).abs().max() < 1e-5
        assert np.abs(session.run(None, {"images": images.numpy()})[0] - expected.numpy()).max() < 1e-5


def test_tf_same_padding_is_profiled_like_symmetric():
    same = profile_model(MobileNetV1(alpha=0.5, padding="tf_same"), 160)
    symmetric = profile_model(MobileNetV1(alpha=0.5), 160)
    assert (same.macs, same.params) == (symmetric.macs, symmetric.params)
