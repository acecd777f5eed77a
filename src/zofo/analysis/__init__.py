"""From run folders to what the README shows: ``load`` reads runs, ``tables`` computes every number
once, ``figures`` draws tables and ``claims`` judges the papers' claims from the same tables."""
