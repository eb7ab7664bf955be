"""The multi-task inference graph: one body, every head's post-processed outputs, named ``<head>.<output>``."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from torch import Tensor, nn

from mobilenets.core.errors import SettingError
from mobilenets.core.imports import resolve_class
from mobilenets.tasks.export import Answerer, TaskExport

__all__ = ["MultiTaskExport"]


class MultiTaskExport(TaskExport):
    """Images in [0, 1] -> each head's export outputs in head order (``face_attributes.probabilities``,
    ``face_embedding.embeddings`` ...), the normalisation and the body computed once for all of them.

    Each head's own export (``export_module``) gives its post-processing and metadata; its network copy is
    dropped, the shared graph (``MultiTask.inference_network``) computes every head's network outputs.
    """

    def __init__(self, task: Any) -> None:
        super().__init__(task)
        self.heads = nn.ModuleDict()
        for name, head in task.heads.items():
            export = head.export_module()
            if export.graph_outputs != export.output_names or type(export).finish_onnx is not TaskExport.finish_onnx:
                raise SettingError(f"MultiTask head {name!r}: {type(export).__name__} finishes its graph outside "
                                   f"PyTorch and cannot be part of a shared graph; export that task on its own")
            export.network = nn.Identity()  # the shared network below computes its outputs
            self.heads[name] = export
        self.output_names = tuple(f"{name}.{output}" for name, export in self.heads.items()
                                  for output in export.output_names)
        self.dynamic_size_ok = all(export.dynamic_size_ok for export in self.heads.values())
        self.fixed_cost = all(export.fixed_cost for export in self.heads.values())
        self.slices: dict[str, slice] = {}
        start = 0
        for name, export in self.heads.items():
            self.slices[name] = slice(start, start + len(export.output_names))
            start += len(export.output_names)

    def postprocess(self, outputs: tuple[Any, ...]) -> tuple[Tensor, ...]:
        return tuple(tensor for export, output in zip(self.heads.values(), outputs)
                     for tensor in export.postprocess(output))

    def metadata(self) -> dict[str, Any]:
        heads = {}
        for name, export in self.heads.items():
            own = export.metadata()
            heads[name] = {key: value for key, value in own.items() if key not in ("resolution", "input")}
        return {**super().metadata(), "heads": heads}

    @classmethod
    def answerer(cls, metadata: dict[str, Any]) -> Answerer:
        """``{"heads": {name: that head's task's answer}}``."""
        heads = {name: (resolve_class(head["export"], None).answerer({**head, "resolution": metadata["resolution"]}),
                        head["outputs"]) for name, head in metadata["heads"].items()}

        def answer(outputs: dict[str, np.ndarray], sizes: Sequence[tuple[int, int]]) -> list[dict[str, Any]]:
            answers = {name: head(dict((output, outputs[f"{name}.{output}"]) for output in names), sizes)
                       for name, (head, names) in heads.items()}
            return [{"heads": {name: answers[name][i] for name in heads}} for i in range(len(sizes))]
        return answer
