"""Face attributes (the paper's Table 12): CelebA-format multi-label data, masked BCE, mean AP."""

from mobilenets.tasks.face_attributes.data import CelebADataModule
from mobilenets.tasks.face_attributes.model import table12
from mobilenets.tasks.face_attributes.synthetic import write_celeba
from mobilenets.tasks.face_attributes.task import FaceAttributesTask

__all__ = ["CelebADataModule", "FaceAttributesTask", "table12", "write_celeba"]
