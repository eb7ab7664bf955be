"""Several task heads on one MobileNet body: trained jointly on each head's own data, shipped as one graph."""

from mobilenets.core.lazy import lazy_exports

__all__ = ["MultiHeadNetwork", "MultiTask", "MultiTaskDataModule", "MultiTaskExport", "UncertaintyWeighting",
           "write_multitask"]
__getattr__ = lazy_exports(__name__, {
    "MultiHeadNetwork": "model",
    "MultiTask": "task",
    "MultiTaskDataModule": "data",
    "MultiTaskExport": "export",
    "UncertaintyWeighting": "model",
    "write_multitask": "synthetic",
})
