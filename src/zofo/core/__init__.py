"""The core every other layer builds on: frozen config dataclasses (``config``), errors that name the
key (``errors``), registries with "did you mean" (``registry``), named seeds (``seeds``), devices and
precision (``device``), and the seeded zeroth-order step written once (``zo``, ``philox``)."""
