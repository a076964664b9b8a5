"""Model registry: ``create_model(name, spatial_dims, in_channels, out_channels, **kw)``."""

from scandx.models.registry import (
    create_model,
    list_models,
    min_input_size,
    model_kind,
    register_model,
)

__all__ = ["create_model", "list_models", "min_input_size", "model_kind", "register_model"]
