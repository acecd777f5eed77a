"""Byzantine robustness: robust aggregation rules and attacks on what clients send up.

Both are pure functions of tensors (plus an explicit generator for attacks), so a method can apply
them to any uplink payload without changing its own state or the run's random streams.
"""
