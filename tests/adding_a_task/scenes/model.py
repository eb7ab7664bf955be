"""The network: the suite's backbone and a linear head."""

from torch import Tensor, nn

from mobilenets.backbone import MobileNetV1


class SceneNet(nn.Module):
    def __init__(self, backbone: MobileNetV1, num_classes: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(backbone.num_features, num_classes)

    def forward(self, images: Tensor) -> Tensor:
        return self.head(self.backbone(images))
