"""Face attributes (the paper's Table 12): CelebA-format multi-label data, masked BCE, mean AP."""

from mobilenets.core.lazy import lazy_exports

__all__ = [
    "CelebADataModule",
    "FaceAttributes",
    "FaceAttributesTask",
    "table12",
    "write_celeba",
]
__getattr__ = lazy_exports(__name__, {
    "CelebADataModule": "data",
    "table12": "model",
    "write_celeba": "synthetic",
    "FaceAttributes": "task", "FaceAttributesTask": "task",
})
