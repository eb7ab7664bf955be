"""Quantization-aware training: fine-tune a task with its body fake-quantized, so that its weights
survive int8 rounding; ``mobilenets export`` of the resulting checkpoint then quantizes them with each runtime's
own flow (onnxruntime, OpenVINO, LiteRT, ExecuTorch), as it does any checkpoint.

PyTorch's PT2E flow does the fake quantization (torchao's ``prepare_qat_pt2e`` with XNNPACK's quantizer:
symmetric per-channel int8 weights with batch norm folded in, as every export here folds it, and per-tensor
int8 activations, the scheme the runtimes execute). Heads stay float. The body is exported and prepared as few
graphs as the task allows (preparing costs about 5 s a graph): one, or one per stretch between the layers the task
reads (``body_taps``: the layers its network asks the backbone's ``forward_endpoints`` for; SSD reads layer 11, so
two).

Why the float weights and not PT2E's converted graph are the product: that graph's ONNX export constant-folds the
int8 weights back to float and puts quantize / dequantize pairs on both sides of every ReLU6, which onnxruntime
cannot fuse into int8 convolutions (5.7 ms at 1.0-224, slower than fp32's 5.1; its PTQ graph of the same weights
runs at 2.5 ms).
"""

from __future__ import annotations

import copy
import re
from collections import OrderedDict
from typing import Any, Sequence

import pytorch_lightning as pl
import torch
from torch import nn

from mobilenets.core.errors import SettingError

__all__ = ["QuantizationAwareTraining", "body_taps", "float_state", "prepare_body"]


def body_taps(pl_module: pl.LightningModule, size: int) -> tuple[int, ...]:
    """The body layers (paper numbers) a task's network reads besides its last: those it asks the backbone's
    ``forward_endpoints`` for, seen on one probe image."""
    backbone = pl_module.backbone
    asked: set[int] = set()
    endpoints = backbone.forward_endpoints

    def recording(images: torch.Tensor, layers: Sequence[int]) -> dict[str, torch.Tensor]:
        asked.update(layers)
        return endpoints(images, layers)

    backbone.forward_endpoints = recording
    try:
        with torch.no_grad():
            pl_module.inference_network().eval()(torch.rand(1, 3, size, size, device=pl_module.device))
    finally:
        del backbone.forward_endpoints
    pl_module.train()
    last = backbone.layer_numbers[-1]
    return tuple(sorted(asked - {last}, key=backbone.layer_numbers.index))


def prepare_body(features: nn.Sequential, resolution: int, taps: Sequence[str] = ()) -> nn.Sequential:
    """The body (``backbone.features``) as PT2E QAT graphs: in training mode, with fake quantization of weights
    (per channel, batch norm folded in) and activations, batch size free. One graph per stretch of layers ending at
    a tap (a layer whose map the task reads) or at the last layer, named after that layer, so ``forward_endpoints``
    finds the taps' maps; not one per layer: preparing costs about 5 s a graph on 2 cores, whatever its size."""
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from torchao.quantization.pt2e import allow_exported_model_train_eval
    from torchao.quantization.pt2e.quantize_pt2e import prepare_qat_pt2e

    quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True, is_qat=True))
    was_training = features.training
    names = [name for name, _ in features.named_children()]
    ends = sorted({names.index(tap) for tap in taps} | {len(names) - 1})
    sample = torch.rand(2, 3, resolution, resolution, device=next(features.parameters()).device)
    graphs: OrderedDict[str, nn.Module] = OrderedDict()
    start = 0
    for end in ends:
        stretch = nn.Sequential(OrderedDict((name, features.get_submodule(name)) for name in names[start:end + 1]))
        program = torch.export.export(stretch.train(), (sample,),
                                      dynamic_shapes=({0: torch.export.Dim("batch", min=1)},))
        graphs[names[end]] = prepare_qat_pt2e(program.module(), quantizer)
        allow_exported_model_train_eval(graphs[names[end]])  # Lightning switches train / eval every validation
        with torch.no_grad():
            sample = stretch.eval()(sample)  # the next stretch's input (eval: the statistics stay)
        start = end + 1
    return nn.Sequential(graphs).train(was_training)


#: ``prepare_body``'s graph names: a layer name directly followed by another layer name
_GRAPH_PREFIX = re.compile(r"(?:(?<=\.)|^)layer\d+\.(?=layer\d+\.)")


def float_state(state_dict: dict[str, Any]) -> dict[str, Any]:
    """A state dict of a body under QAT without the fake quantizers' state (``activation_post_process_*``): the
    float weights and batch-norm statistics under their usual names (a graph's name, ``layer11.`` before its
    ``layer0.``, dropped)."""
    return {_GRAPH_PREFIX.sub("", key): value for key, value in state_dict.items()
            if ".activation_post_process_" not in f".{key}"}


class QuantizationAwareTraining(pl.Callback):
    """Fine-tune with the body fake-quantized; checkpoints and the task after the fit hold plain float weights.

    Add it to a fit that starts from a trained float checkpoint, then export the fine-tuned checkpoint::

        mobilenets fit --config CONFIG.yaml --trainer.callbacks+=mobilenets.deploy.qat.QuantizationAwareTraining \\
            --trainer.callbacks.init_args.checkpoint FLOAT.ckpt --trainer.max_epochs 2
        mobilenets export BEST.ckpt

    Validation during the fit runs the fake-quantized body, so the best checkpoint is chosen by its int8-like
    metric. Checkpoints are saved without the quantizers' state: they load as ordinary checkpoints of the task
    (resuming one starts the quantizers' ranges afresh).

    Args:
        checkpoint: a float checkpoint of the same task whose weights the fine-tuning starts from (default:
            the weights the fit starts with).
    """

    def __init__(self, checkpoint: str | None = None) -> None:
        self.checkpoint = checkpoint
        self._float_body: nn.Module = nn.Sequential()

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Load the float weights and prepare the body; after ``setup`` (a task may build its network there, from
        the data's class count) and after the optimizers are made: the prepared graph holds the same parameter
        objects, so the optimizers step them."""
        if trainer.world_size > 1:
            raise SettingError("QuantizationAwareTraining runs in one process (each process would export its own "
                               "graphs): drop the DDP strategy")
        if getattr(pl_module, "hparams", {}).get("compile"):
            raise SettingError("QuantizationAwareTraining exports and prepares its own graph of the body, which "
                               "torch.compile cannot wrap: set model.init_args.compile: false for the QAT fit")
        if self.checkpoint:
            state = torch.load(self.checkpoint, map_location="cpu", weights_only=True)["state_dict"]
            pl_module.load_state_dict(state)
        backbone = pl_module.backbone
        backbone.to(memory_format=torch.contiguous_format)  # PT2E's patterns match NCHW weights
        self._float_body = copy.deepcopy(backbone.features)
        size = int(pl_module.hparams.resolution)
        taps = body_taps(pl_module, size)  # any LightningModule with a backbone and an inference network
        backbone.features = prepare_body(backbone.features, size,
                                         [backbone.endpoint_info(layer)["name"] for layer in taps])
        observed = copy.deepcopy(backbone.features.state_dict())  # the probe below must not set any range
        try:  # one random image through the task's network: does it read only the graphs' ends?
            with torch.no_grad():
                pl_module.inference_network().eval()(torch.rand(1, 3, size, size, device=pl_module.device))
            undeclared = None
        except (NotImplementedError, KeyError, AttributeError) as error:  # a layer inside a graph was called or
            undeclared = error  # looked up
        backbone.features.load_state_dict(observed)
        pl_module.train()
        if undeclared is not None:
            backbone.features = self._float_body
            raise SettingError(f"QuantizationAwareTraining: {type(pl_module).__name__} reads body layers other "
                               f"than the last without the backbone's forward_endpoints (it asked it for {taps}); "
                               "read them with backbone.forward_endpoints") from undeclared

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        checkpoint["state_dict"] = float_state(checkpoint["state_dict"])

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Put the float layers back, holding the fine-tuned weights."""
        backbone = pl_module.backbone
        self._float_body.load_state_dict(float_state(backbone.features.state_dict()))
        backbone.features = self._float_body.to(pl_module.device)
