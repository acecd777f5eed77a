"""From run folders to what the README shows, each number computed once.

``load`` reads run folders (the only reader of ``meta.json``) and attaches each run's grid cell and
model size; ``stats`` defines every statistic (mean, sd and se over seeds, differences, the one-shot
gap, reaching a target); ``tables`` turns the runs into the run and curve tables and every summary of
them; ``figures`` draws those tables and computes nothing; ``claims`` judges the papers' claims from
the same tables."""
