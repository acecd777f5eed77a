"""The one round loop (``loop``) and what it needs: preparation (``prepare``), the wire codec (``comm``),
the client partition (``partition``), checkpoints (``checkpoints``) and the run record (``record``)."""
