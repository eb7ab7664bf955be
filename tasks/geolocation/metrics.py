"""Great-circle accuracy at PlaNet's distance scales (torchmetrics has no geodesic metric)."""

from __future__ import annotations

import torch
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

__all__ = ["EARTH_RADIUS_KM", "SCALES_KM", "GeolocationAccuracy", "haversine_km"]

EARTH_RADIUS_KM = 6371.0
SCALES_KM = (1, 25, 200, 750, 2500)  # street, city, region, country, continent


def haversine_km(lat1: torch.Tensor, lon1: torch.Tensor, lat2: torch.Tensor, lon2: torch.Tensor) -> torch.Tensor:
    """Great-circle distance in km between coordinates in degrees (haversine, R = 6371 km)."""
    lat1, lon1, lat2, lon2 = (torch.deg2rad(t.double()) for t in (lat1, lon1, lat2, lon2))
    a = torch.sin((lat2 - lat1) / 2) ** 2 + torch.cos(lat1) * torch.cos(lat2) * torch.sin((lon2 - lon1) / 2) ** 2
    return 2 * EARTH_RADIUS_KM * torch.asin(torch.sqrt(a.clamp(0, 1)))


class GeolocationAccuracy(Metric):
    """Fraction of predictions within each of ``SCALES_KM`` of the truth, and the median error in km.

    Errors are kept per sample and gathered across processes by torchmetrics, so under DDP every sample counts
    once per rank that saw it.
    """

    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        self.add_state("errors", default=[], dist_reduce_fx="cat")

    def update(self, lat: torch.Tensor, lon: torch.Tensor, true_lat: torch.Tensor, true_lon: torch.Tensor) -> None:
        self.errors.append(haversine_km(lat, lon, true_lat, true_lon))

    def compute(self) -> dict[str, torch.Tensor]:
        errors = dim_zero_cat(self.errors)
        results = {f"acc_{km}km": (errors <= km).double().mean() for km in SCALES_KM}
        results["median_km"] = errors.median()
        return results
