"""Distillation: small MobileNet students trained from large frozen teachers (the paper's Tables 12 and 14)."""
