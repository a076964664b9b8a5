"""Training: losses, augmentation, checkpoints, the loop."""
