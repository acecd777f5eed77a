"""The experiment grid the workflow runs: studies expanded into run folders (``study``) and GPU slots for
concurrent jobs (``gpu_slots``)."""
