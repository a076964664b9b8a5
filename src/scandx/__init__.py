"""scandx: from a folder of medical images to an evaluated, explained, served diagnostic model."""

__version__ = "0.1.0"
