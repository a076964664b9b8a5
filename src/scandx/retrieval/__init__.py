"""Similar-case retrieval: ``scandx embed`` stores one vector per case of a source in an
index folder (``index_store``), ``scandx similar`` finds a query image's nearest cases
(``search``) and shows them on a page (``page``); the service shows them beside a
prediction (``serve/similar_route.py``).

Vectors come from an Embedder (``core/embedding.py``): any run's, through its task's
``load_embedder``, or the raw-pixel baseline (``pixels``).
"""
