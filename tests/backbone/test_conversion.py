"""Published MobileNet v1 weights convert exactly: each reference model (Keras 3 on the torch backend, Hugging Face
transformers, TF-slim's variables written by TensorFlow itself) is built here with random weights, saved in its
published layout by its own library, converted, and must give the reference's logits (within 1e-4; both sides
compute in float64, so the check sees the conversion, not float32 rounding through 28 layers)."""

import importlib.util

import numpy as np
import pytest
import torch

from mobilenets.backbone import MobileNetV1, load_pretrained, profile_model
from mobilenets.backbone.reference import conversion_checks, hf_reference, keras_reference, save_keras_h5, save_tf_slim
from mobilenets.backbone.weights import load_backbone, read_weights, save_backbone

if any(importlib.util.find_spec(name) is None for name in ("keras", "transformers", "tensorflow")):
    pytest.skip("the reference libraries are the dev extra's: pip install -e '.[dev]'", allow_module_level=True)


def _ours(path, images: torch.Tensor, **kwargs) -> torch.Tensor:
    with torch.no_grad():
        return load_backbone(path, **kwargs).eval().double()(images)


def _images(resolution: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(2, 3, resolution, resolution, generator=generator, dtype=torch.float64) * 2 - 1


def test_every_format_gives_the_references_logits_across_the_family(tmp_path):
    """The conversion table of ``mobilenets weights check`` (4 alpha/resolution pairs), here at its two ends;
    the other tests cover 0.5-160 (Keras) and 0.75-223 (Hugging Face)."""
    pairs = ((1.0, 224), (0.25, 128))
    rows = conversion_checks(pairs=pairs, folder=tmp_path)
    assert [(row["format"], row["alpha"], row["resolution"]) for row in rows] == [
        (name, alpha, resolution) for name in ("keras", "tf-slim", "hugging-face") for alpha, resolution in pairs]
    assert max(row["max_abs_diff"] for row in rows) < 1e-4, rows


def test_keras_files_whole_models_and_keras3_weights(tmp_path):
    reference = keras_reference(0.5, 160)
    images = _images(160)
    expected = reference(images)
    reference.model.save(tmp_path / "model.h5")  # a whole model saved by Keras 3 as HDF5 reads the same
    assert (_ours(tmp_path / "model.h5", images) - expected).abs().max() < 1e-4
    reference.model.save_weights(tmp_path / "model.weights.h5")  # names layers by type: refused, saying what to do
    with pytest.raises(ValueError, match=r"model.weights.h5: .*Keras 3 .weights.h5.*model.save\('model.h5'\)"):
        read_weights(tmp_path / "model.weights.h5")


def test_tf_checkpoints_by_any_of_their_names_and_the_background_class(tmp_path):
    reference = keras_reference(0.25, 128, seed=1)
    images = _images(128, seed=1)
    expected = reference(images)
    prefix = save_tf_slim(reference, tmp_path / "mobilenet_v1_0.25_128.ckpt")
    for named_as in (prefix, f"{prefix}.index", f"{prefix}.data-00000-of-00001"):
        actual = _ours(named_as, images)
        assert actual.shape == (2, 1000)  # background dropped: ImageNet's 1000 classes
        assert (actual - expected).abs().max() < 1e-4
    kept = _ours(prefix, images, keep_background=True)
    assert kept.shape == (2, 1001)  # the same rows: equal up to the float64 GEMM's summation order for 1001 outputs
    torch.testing.assert_close(kept[:, 1:], _ours(prefix, images), rtol=0, atol=1e-12)


def test_hugging_face_at_an_odd_resolution_where_tf_pads_bottom_right(tmp_path):
    reference = hf_reference(0.75, 223, seed=2)
    reference.model.save_pretrained(tmp_path / "hf")
    images = _images(223, seed=2)
    actual = _ours(tmp_path / "hf" / "model.safetensors", images, keep_background=True)
    assert (actual - reference(images)).abs().max() < 1e-4


def test_converted_weights_carry_padding_and_tf_preprocessing(tmp_path):
    reference = keras_reference(0.25, 128, seed=3)
    save_keras_h5(reference, tmp_path / "keras.h5")
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
