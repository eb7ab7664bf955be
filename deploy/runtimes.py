"""The runtimes an export is written for besides onnxruntime: LiteRT (TFLite, through litert-torch), ExecuTorch
(XNNPACK delegate) and OpenVINO (with NNCF's int8). Each writes the task's inference graph in its own format, fp32
and int8 through its own post-training quantization flow, with the export's metadata inside the file, and reads
it back as a runner, so ``mobilenets export`` checks and scores every format with the same code as ONNX.

What runs where: LiteRT and ExecuTorch hold the graph up to the task's last tensor op; detection's per-class NMS
(``TaskExport.complete``) then runs in PyTorch beside them, as neither format takes a traced NMS. OpenVINO reads the
ONNX file, so its graph includes ONNX's ``NonMaxSuppression``. LiteRT and ExecuTorch files take batch 1, as a phone
runs them (litert-torch cannot lower a dynamic batch of these graphs; XNNPACK's delegate fixes some batch dimensions
of a dynamic-batch ExecuTorch program), so their runners feed a batch image by image.
"""

from __future__ import annotations

import contextlib
import copy
import ctypes
import json
import os
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
from torch import Tensor

from mobilenets.core.errors import SettingError
from mobilenets.core.io import replacing
from mobilenets.deploy.export import quiet
from mobilenets.tasks.export import TaskExport

__all__ = ["FORMATS", "TELEMETRY_ENV", "ExecuTorchRuntime", "LiteRtRuntime", "OpenVinoRuntime", "Runtime",
           "import_nncf", "runtime", "telemetry_off"]

#: Set to 1 to let the libraries the suite calls send their usage telemetry (NNCF's); off by default.
TELEMETRY_ENV = "MOBILENETS_TELEMETRY"


def telemetry_off() -> bool:
    """Turn NNCF's usage telemetry off before it is imported, unless ``MOBILENETS_TELEMETRY=1``; whether it is off.
    NNCF reports to Google Analytics unless an opt-out file exists in the user's home, and an offline tool run on
    people's data sends nothing by default. (The OpenVINO runtime calls the suite makes send nothing; only
    OpenVINO's model converter, which the suite does not use, has telemetry.)"""
    if os.environ.get(TELEMETRY_ENV) == "1":
        return False
    os.environ.setdefault("NNCF_CI", "1")  # NNCF's one switch: read when nncf is imported, its telemetry a stub
    return True


def import_nncf() -> Any:
    """NNCF, imported with its telemetry as ``telemetry_off`` leaves it."""
    telemetry_off()
    import nncf

    return nncf

METADATA_KEY = "mobilenets"


class Runtime:
    """One deployment format: writes fp32 and int8 files of an export and runs them.

    Attributes:
        name: the ``--format`` name.
        suffix: the file's extension.
        extra: the package extra that installs it ("" for a dependency of the package itself).
    """

    name = ""
    suffix = ""
    extra = ""
    modules: tuple[str, ...] = ()

    def check_installed(self) -> None:
        """Raise a one-line error naming the extra to install when the runtime's packages are missing."""
        import importlib.util

        missing = [module for module in self.modules if importlib.util.find_spec(module) is None]
        if missing:
            package = f"mobilenet-suite[{self.extra}]" if self.extra else "mobilenet-suite"
            raise SettingError(f"--format {self.name} needs {', '.join(missing)}: pip install '{package}'")

    def write(self, export: TaskExport, path: Path, onnx_path: Path,
              calibration: Sequence[np.ndarray] | None = None) -> Path:
        """Write ``export`` to ``path`` (``onnx_path`` is its ONNX file): fp32, or int8 calibrated on
        ``calibration`` batches when given."""
        with quiet():
            return self._write(export, Path(path), Path(onnx_path), calibration)

    def _write(self, export: TaskExport, path: Path, onnx_path: Path,
               calibration: Sequence[np.ndarray] | None) -> Path:
        raise NotImplementedError

    def runner(self, path: Path, export: TaskExport, threads: int) -> Callable[[Tensor], tuple[np.ndarray, ...]]:
        """A runner over a written file: images in [0, 1] -> the export's final outputs (``output_names``)."""
        raise NotImplementedError

    def read_metadata(self, path: Path) -> dict[str, Any]:
        """The ``mobilenets`` metadata written inside the file."""
        raise NotImplementedError


class _SignalStack(ctypes.Structure):
    """POSIX ``stack_t``."""

    _fields_ = [("ss_sp", ctypes.c_void_p), ("ss_flags", ctypes.c_int), ("ss_size", ctypes.c_size_t)]


@contextlib.contextmanager
def kept_signal_stack() -> Iterator[None]:
    """Give the calling thread its alternate signal stack back after the block.

    OpenVINO's CPU plugin (``compile_model``, which NNCF's ``quantize`` calls too) installs an alternate signal
    stack on the calling thread and later frees that memory without uninstalling it. The next signal whose
    Python handler runs there (a data loader worker's SIGCHLD, in a fit later in the same process) then kills
    the process with SIGSEGV. Hand-written (ctypes' ``sigaltstack``): neither OpenVINO nor Python restores it.
    """
    if os.name != "posix":  # no alternate signal stacks
        yield
        return
    libc = ctypes.CDLL(None, use_errno=True)
    before = _SignalStack()
    libc.sigaltstack(None, ctypes.byref(before))
    try:
        yield
    finally:
        if before.ss_flags & 1:  # SS_ONSTACK: running on it; its settings cannot change now
            return
        libc.sigaltstack(ctypes.byref(_SignalStack(before.ss_sp, before.ss_flags & 2, before.ss_size)), None)


def _eager_graph(export: TaskExport) -> TaskExport:
    """A copy of the export in contiguous (NCHW) memory layout: XNNPACK's and LiteRT's layout passes expect the
    weights NCHW and insert their own channels-last conversions."""
    return copy.deepcopy(export).to(memory_format=torch.contiguous_format)


def _quantized_network(graph: TaskExport, quantizer: Any, calibration: Sequence[np.ndarray],
                       fold_quantize: bool) -> TaskExport:
    """PT2E post-training quantization of the export's network only (its post-processing stays float, as in the
    ONNX and OpenVINO int8 files; litert-torch's quantizer would otherwise make softmax outputs and decoded boxes
    int8 too): export the network, insert the quantizer's observers, run the calibration images through the graph one by
    one (the files hold batch 1), and convert to quantize/dequantize pairs (weights stored int8 with
    ``fold_quantize``, as XNNPACK takes them; float with their quantize op, as litert-torch's lowering takes
    them)."""
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    sample = torch.rand(1, 3, graph.resolution, graph.resolution)
    network = torch.export.export(graph.network, ((sample - graph.mean) / graph.std,)).module()
    graph.network = prepare_pt2e(network, quantizer)
    with torch.no_grad():
        for batch in calibration:
            for image in torch.from_numpy(np.asarray(batch, dtype=np.float32)):
                graph(image[None])
    graph.network = convert_pt2e(graph.network, fold_quantize=fold_quantize)
    return graph


def _litert_quantizer() -> Any:
    """litert-torch's full-integer PT2E quantizer (symmetric int8, per-channel weights), with every concatenation
    it leaves unannotated given one shared, calibrated scale for its inputs and output.

    Hand-written because litert-torch 0.10 leaves a concatenation of separately quantized tensors float (SSD's
    per-map box regressions), and its converter then makes it int8 at the last input's scale, requantizing the
    others to it: on the demo detector, five maps' deltas (about +-3 to +-4.4) are clipped to +-0.48 and mAP50 falls
    to 39.2 against 46.8 in fp32; with the shared scale it is 46.1 (docs/notes/litert-concat-scale.md)."""
    from litert_torch.quantize import pt2e_quantizer
    from torchao.quantization.pt2e.quantizer import QuantizationAnnotation, SharedQuantizationSpec

    config = pt2e_quantizer.get_symmetric_quantization_config(is_per_channel=True)

    class SharedScaleConcatenation(pt2e_quantizer.PT2EQuantizer):
        def annotate(self, model: torch.fx.GraphModule) -> torch.fx.GraphModule:
            model = super().annotate(model)
            spec = config.input_activation
            for node in model.graph.nodes:
                if node.target == torch.ops.aten.cat.default and "quantization_annotation" not in node.meta:
                    first, *rest = node.args[0]
                    shared = SharedQuantizationSpec((first, node))
                    node.meta["quantization_annotation"] = QuantizationAnnotation(
                        input_qspec_map={first: spec, **{other: shared for other in rest}}, output_qspec=shared,
                        _annotated=True)
            return model

    return SharedScaleConcatenation().set_global(config)


def _per_image(export: TaskExport, run_one: Callable[[np.ndarray], Sequence[Any]]
               ) -> Callable[[Tensor], tuple[np.ndarray, ...]]:
    """A batch runner over a batch-1 file: each image in turn through ``run_one``, the graph's outputs joined,
    index outputs back to int64 (LiteRT narrows them to int32), then ``export.complete`` (detection's NMS)."""

    def run(images: Tensor | np.ndarray) -> tuple[np.ndarray, ...]:
        array = np.ascontiguousarray(images, dtype=np.float32)
        results = [[torch.as_tensor(np.asarray(value)) for value in run_one(array[i:i + 1])] for i in range(len(array))]
        joined = tuple(torch.cat(parts) for parts in zip(*results))
        joined = tuple(t.long() if not t.is_floating_point() else t for t in joined)
        return tuple(t.numpy() for t in export.complete(joined))

    return run


class LiteRtRuntime(Runtime):
    """LiteRT (TFLite) through litert-torch, run in ai-edge-litert's interpreter (XNNPACK on CPU); int8 is
    litert-torch's PT2E full-integer quantizer (symmetric int8, per-channel weights), calibrated."""

    name, suffix, extra = "tflite", ".tflite", "tflite"
    modules = ("litert_torch", "ai_edge_litert")

    def _write(self, export: TaskExport, path: Path, onnx_path: Path,
               calibration: Sequence[np.ndarray] | None) -> Path:
        import litert_torch
        from litert_torch.quantize.quant_config import QuantConfig

        graph = _eager_graph(export)
        sample = torch.rand(1, 3, export.resolution, export.resolution)
        with torch.no_grad():
            if calibration is None:
                model = litert_torch.convert(graph, (sample,))
            else:
                quantizer = _litert_quantizer()
                graph = _quantized_network(graph, quantizer, calibration, fold_quantize=False)
                model = litert_torch.convert(graph, (sample,), quant_config=QuantConfig(pt2e_quantizer=quantizer))
        with replacing(path) as partial:
            Path(partial).write_bytes(_with_tflite_metadata(model.model_content(), export.metadata()))
        return path

    def runner(self, path: Path, export: TaskExport, threads: int) -> Callable[[Tensor], tuple[np.ndarray, ...]]:
        from ai_edge_litert.interpreter import Interpreter

        signature = Interpreter(model_path=str(path), num_threads=threads).get_signature_runner()
        (input_name,) = signature.get_input_details()
        details = signature.get_output_details()
        order = sorted(details, key=lambda name: int(name.rsplit("_", 1)[-1]))
        # A full-integer model may end in an int8 tensor (a sigmoid's output): its scale and zero point read it.
        scales = {name: details[name]["quantization"] for name in order
                  if details[name]["dtype"] in (np.int8, np.uint8) and details[name]["quantization"][0] > 0}

        def run_one(image: np.ndarray) -> list[np.ndarray]:
            outputs = signature(**{input_name: image})
            return [(outputs[name].astype(np.float32) - scales[name][1]) * scales[name][0] if name in scales
                    else outputs[name] for name in order]

        return _per_image(export, run_one)

    def read_metadata(self, path: Path) -> dict[str, Any]:
        from ai_edge_litert.tools import flatbuffer_utils

        model = flatbuffer_utils.read_model_from_bytearray(bytearray(Path(path).read_bytes()))
        for entry in model.metadata or []:
            if entry.name.decode() == METADATA_KEY:
                return json.loads(bytes(model.buffers[entry.buffer].data).decode())
        raise ValueError(f"{path}: not exported by mobilenets (no '{METADATA_KEY}' metadata)")


def _with_tflite_metadata(model_bytes: bytes, metadata: dict[str, Any]) -> bytes:
    """The flatbuffer with a ``mobilenets`` metadata entry (TFLite's name -> buffer table, which the runtime
    carries along and ignores) holding the export's metadata as JSON."""
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(model_bytes))
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(json.dumps(metadata).encode(), dtype=np.uint8)
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name, entry.buffer = METADATA_KEY, len(model.buffers) - 1
    model.metadata = [*(model.metadata or []), entry]
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


class ExecuTorchRuntime(Runtime):
    """ExecuTorch with the XNNPACK delegate, run in its Python runtime; int8 is XNNPACK's PT2E quantizer
    (symmetric, per-channel weights), calibrated. The metadata is a constant method, ``mobilenets_metadata``."""

    name, suffix, extra = "executorch", ".pte", "executorch"
    modules = ("executorch",)

    def _write(self, export: TaskExport, path: Path, onnx_path: Path,
               calibration: Sequence[np.ndarray] | None) -> Path:
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
        from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
            XNNPACKQuantizer,
            get_symmetric_quantization_config,
        )
        from executorch.exir import to_edge_transform_and_lower

        graph = _eager_graph(export)
        sample = torch.rand(1, 3, export.resolution, export.resolution)
        with torch.no_grad():
            if calibration is not None:
                quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
                graph = _quantized_network(graph, quantizer, calibration, fold_quantize=True)
            program = torch.export.export(graph, (sample,))
        lowered = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()],
                                              constant_methods={f"{METADATA_KEY}_metadata":
                                                                json.dumps(export.metadata())})
        with replacing(path) as partial:
            Path(partial).write_bytes(lowered.to_executorch().buffer)
        return path

    def runner(self, path: Path, export: TaskExport, threads: int) -> Callable[[Tensor], tuple[np.ndarray, ...]]:
        from executorch.runtime import Runtime as ExecuTorch

        method = ExecuTorch.get().load_program(str(path)).load_method("forward")
        return _per_image(export, lambda image: method.execute([torch.from_numpy(image)]))

    def read_metadata(self, path: Path) -> dict[str, Any]:
        from executorch.runtime import Runtime as ExecuTorch

        program = ExecuTorch.get().load_program(str(path))
        if f"{METADATA_KEY}_metadata" not in program.method_names:
            raise ValueError(f"{path}: not exported by mobilenets (no '{METADATA_KEY}_metadata' method)")
        return json.loads(program.load_method(f"{METADATA_KEY}_metadata").execute([])[0])


class OpenVinoRuntime(Runtime):
    """OpenVINO IR (``.xml`` + ``.bin``) converted from the ONNX file, so it runs the whole graph, NMS included;
    int8 is NNCF's post-training quantization, calibrated. Run at f32 inference precision (OpenVINO's default
    on CPUs with AMX is bf16, a precision change of its own)."""

    name, suffix, extra = "openvino", ".xml", ""
    modules = ("openvino", "nncf")

    def _write(self, export: TaskExport, path: Path, onnx_path: Path,
               calibration: Sequence[np.ndarray] | None) -> Path:
        import openvino as ov

        model = ov.Core().read_model(str(onnx_path))  # its ONNX front end, as convert_model uses
        if calibration is not None:
            nncf = import_nncf()
            with kept_signal_stack():
                model = nncf.quantize(model, nncf.Dataset([np.asarray(batch, dtype=np.float32)
                                                           for batch in calibration]), subset_size=len(calibration))
        model.set_rt_info(json.dumps(export.metadata()), [METADATA_KEY])
        with replacing(path) as partial:  # the .bin beside it is named after the .xml
            ov.save_model(model, str(Path(partial).with_suffix(".xml")), compress_to_fp16=False)
            Path(partial).with_suffix(".bin").replace(path.with_suffix(".bin"))
            Path(partial).with_suffix(".xml").replace(partial)
        return path

    def runner(self, path: Path, export: TaskExport, threads: int) -> Callable[[Tensor], tuple[np.ndarray, ...]]:
        import openvino as ov

        with kept_signal_stack():
            compiled = ov.Core().compile_model(str(path), "CPU", {
                "INFERENCE_NUM_THREADS": threads, "NUM_STREAMS": 1, "PERFORMANCE_HINT": "LATENCY",
                "INFERENCE_PRECISION_HINT": "f32"})
        request = compiled.create_infer_request()

        def run(images: Tensor | np.ndarray) -> tuple[np.ndarray, ...]:
            results = request.infer([np.ascontiguousarray(images, dtype=np.float32)])
            return tuple(np.array(results[output]) for output in compiled.outputs)

        return run

    def read_metadata(self, path: Path) -> dict[str, Any]:
        import openvino as ov

        model = ov.Core().read_model(str(path))
        if not model.has_rt_info([METADATA_KEY]):
            raise ValueError(f"{path}: not exported by mobilenets (no '{METADATA_KEY}' rt_info)")
        return json.loads(model.get_rt_info([METADATA_KEY]).astype(str))


FORMATS: dict[str, type[Runtime]] = {cls.name: cls for cls in (LiteRtRuntime, ExecuTorchRuntime, OpenVinoRuntime)}


def runtime(name: str) -> Runtime:
    """The runtime of a ``--format`` name (not ``onnx``, which ``mobilenets.deploy.export`` writes)."""
    if name not in FORMATS:
        raise SettingError(f"unknown export format {name!r}: choose from onnx, {', '.join(FORMATS)}")
    chosen = FORMATS[name]()
    chosen.check_installed()
    return chosen
