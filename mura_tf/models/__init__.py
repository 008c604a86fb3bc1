"""Backbones, classification heads and the layers export needs."""
