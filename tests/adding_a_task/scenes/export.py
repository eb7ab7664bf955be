"""The inference graph: softmax over the scenes."""

from torch import Tensor

from mobilenets.tasks.export import TaskExport


class SceneExport(TaskExport):
    output_names = ("probabilities",)

    def postprocess(self, logits: Tensor) -> tuple[Tensor, ...]:
        return (logits.softmax(dim=1),)

    @classmethod
    def answerer(cls, metadata):
        """``mobilenets serve``'s answer: each scene's probability."""
        def answer(outputs, sizes):
            return [{"probabilities": [float(p) for p in outputs["probabilities"][i]]} for i in range(len(sizes))]
        return answer
