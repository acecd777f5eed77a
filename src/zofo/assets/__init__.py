"""What a run trains and scores: models (``models``, ``packaged`` for the assets shipped in registry
packages), tasks (``tasks``), metrics as ``evaluate`` modules (``metrics``) and the objectives that
join a model to a task (``objectives``)."""
