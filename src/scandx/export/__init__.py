"""Exports of a trained run for other runtimes (ONNX) and the runtimes that read them."""
