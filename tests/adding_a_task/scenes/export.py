"""The inference graph: softmax over the scenes."""

from torch import Tensor

from mobilenets.tasks.export import TaskExport


class SceneExport(TaskExport):
    output_names = ("probabilities",)

    def postprocess(self, logits: Tensor) -> tuple[Tensor, ...]:
        return (logits.softmax(dim=1),)
