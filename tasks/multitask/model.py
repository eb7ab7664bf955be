"""The multi-task network: one MobileNet body computed once per image, every head's outputs from it, and the
learned loss weighting of Kendall et al. (2018)."""

from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import Tensor, nn

from mobilenets.backbone import MobileNetV1

__all__ = ["MultiHeadNetwork", "UncertaintyWeighting"]


class _OncePerInput(nn.Module):
    """A backbone layer that, handed the very input it saw last, returns its last output instead of computing it
    again: every head's pass over one image then shares the body's layers (in eager runs, and in traced graphs,
    where the input is the same proxy)."""

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.layer = layer
        self.last: tuple[Any, Any] | None = None

    def forward(self, x: Tensor) -> Tensor:
        if self.last is not None and self.last[0] is x:
            return self.last[1]
        output = self.layer(x)
        self.last = (x, output)
        return output


class MultiHeadNetwork(nn.Module):
    """Images -> a tuple of every head's network outputs, the shared body run once.

    Hand-written: no library shares one body's layers between independently written heads. The heads' own
    networks (each task's ``inference_network``) are kept as they are, except that the body's layers, which they
    all hold, are wrapped to compute once per input.
    """

    def __init__(self, networks: Mapping[str, nn.Module], body: MobileNetV1) -> None:
        super().__init__()
        self.networks = nn.ModuleDict(networks)
        self._shared = []
        for name, layer in list(body.features.named_children()):
            shared = _OncePerInput(layer)
            setattr(body.features, name, shared)
            self._shared.append(shared)

    def forward(self, images: Tensor) -> tuple[Any, ...]:
        try:
            return tuple(network(images) for network in self.networks.values())
        finally:
            for shared in self._shared:
                shared.last = None  # hold no tensors between calls


class UncertaintyWeighting(nn.Module):
    """Kendall, Gal and Cipolla (2018): total = sum_i exp(-s_i) L_i + s_i, with s_i = log sigma_i^2 learned per
    head, so that each head's weight follows the noise of its own loss. Hand-written: torchmetrics and Lightning
    have no multi-task loss weighting."""

    def __init__(self, names: list[str]) -> None:
        super().__init__()
        self.log_variance = nn.ParameterDict({name: nn.Parameter(torch.zeros(())) for name in names})

    def forward(self, losses: Mapping[str, Tensor]) -> Tensor:
        return sum(self.terms(losses).values())

    def terms(self, losses: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Each head's term of the total, exp(-s_i) L_i + s_i."""
        return {name: torch.exp(-self.log_variance[name]) * loss + self.log_variance[name]
                for name, loss in losses.items()}

    def weights(self) -> dict[str, float]:
        """Each head's current weight, exp(-s_i)."""
        return {name: float(torch.exp(-value.detach())) for name, value in self.log_variance.items()}
