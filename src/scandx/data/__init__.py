"""Readers, sources, manifests, splits and datasets."""
