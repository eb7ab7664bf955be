"""Export of any task's inference graph (``BaseTask.export_module()``) to ONNX.

Every exported model takes float32 RGB images in [0, 1], NCHW, and does the normalisation, the network (batch
norm folded into the convolutions) and the task's post-processing itself, so a deployment needs nothing from
this package. What a consumer needs besides (class names, attribute names, S2 cells, category ids, the input
size) travels in the ONNX file's metadata under ``mobilenets``. Each task's outputs are listed in its export
module (``mobilenets.tasks.<task>.export``).
"""

from __future__ import annotations

import contextlib
import io
import json
import warnings
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch
from torch import nn

from mobilenets.core.io import replacing
from mobilenets.tasks.base import BaseTask
from mobilenets.tasks.export import TaskExport

__all__ = ["export_onnx", "inference_model", "quiet", "read_metadata", "save_onnx", "trace_to_onnx"]

OPSET = 18


def inference_model(task: BaseTask) -> TaskExport:
    """The deployable inference graph of a task (eval mode, batch norm folded), in PyTorch."""
    return task.eval().export_module().eval().requires_grad_(False)


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence an exporter's or converter's progress lines and warnings (torch.onnx's, litert-torch's stage
    lines, NNCF's progress bars)."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        yield


def trace_to_onnx(module: nn.Module, size: int, output_names: Sequence[str], dynamic_size: bool = False) -> Any:
    """Any image-in module as an ONNX ``ModelProto`` through torch.export (the dynamo exporter), one input
    ``images`` of (batch, 3, size, size) with a dynamic batch (and, if asked, dynamic height and width)."""
    dims: dict[int, Any] = {0: torch.export.Dim("batch", min=1, max=4096)}
    if dynamic_size:
        dims.update({2: torch.export.Dim("height", min=32, max=4096), 3: torch.export.Dim("width", min=32, max=4096)})
    with quiet(), torch.no_grad():  # the exporter's progress lines and deprecation notes
        program = torch.onnx.export(module, (torch.rand(2, 3, size, size),), dynamo=True, opset_version=OPSET,
                                    input_names=["images"], output_names=list(output_names),
                                    dynamic_shapes=(dims,), external_data=False, verbose=False)
    return program.model_proto


def save_onnx(model: Any, path: str | Path) -> Path:
    """Check and write an ONNX model: to a temporary name beside ``path``, then renamed, so a file at ``path``
    is always complete."""
    import onnx

    onnx.checker.check_model(model)
    with replacing(path) as partial:
        onnx.save(model, partial)
    return Path(path)


def export_onnx(task: BaseTask, path: str | Path, dynamic_size: bool = False) -> Path:
    """Write the task's inference graph (``inference_model``) to ONNX, with a dynamic batch dimension and the
    export's ``metadata`` under the ``mobilenets`` key.

    Args:
        task: a trained task (``mobilenets.tasks.data.loading.load_task`` reads one from a checkpoint).
        path: the ``.onnx`` file to write.
        dynamic_size: let height and width vary too (where the export allows: not SSD, whose anchors fix it).
    """
    import onnx

    export = inference_model(task)
    if dynamic_size and not export.dynamic_size_ok:
        raise ValueError(f"{type(task).__name__} is exported at its own resolution ({export.resolution} px): "
                         f"drop --dynamic-size")
    model = trace_to_onnx(export, export.resolution, export.graph_outputs, dynamic_size)
    export.finish_onnx(model)
    onnx.helper.set_model_props(model, {"mobilenets": json.dumps(export.metadata())})
    return save_onnx(model, path)


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The ``mobilenets`` metadata of an exported file (task, input size, names of what the outputs index)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    props = {p.key: p.value for p in model.metadata_props}
    if "mobilenets" not in props:
        raise ValueError(f"{path}: not exported by mobilenets (no 'mobilenets' metadata)")
    return json.loads(props["mobilenets"])
