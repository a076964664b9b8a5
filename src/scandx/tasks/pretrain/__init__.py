"""Self-supervised pretraining (``scandx pretrain``): an encoder from unlabelled images
for ``scandx train --init RUN`` (issue 15)."""
