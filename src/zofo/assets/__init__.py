"""What a run trains and scores: models (``models``, ``packaged`` for the assets shipped in registry
packages), tasks (``tasks``), metrics (``metrics``: accuracy as a plain function, both metrics also as
``evaluate`` modules) and the objectives that join a model to a task (``objectives``)."""
