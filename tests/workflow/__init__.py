"""Tests of the Snakemake workflow: a package, so that this folder's conftest is ``workflow.conftest`` and
``from conftest import ...`` still means the suite's own (tests/conftest.py)."""
