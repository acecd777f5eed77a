"""Federated methods, one file each: a module registers its method with ``@METHODS.register(name)``.

``base`` is the interface every method implements and the declarations the engine and the test suites
read from a method class; ``first_order`` is the client loop of the methods that train with gradients
(FedAvg and its variants, Ferret). Methods outside this package join through the plugin seam of
``zofo.core.registry``.
"""
