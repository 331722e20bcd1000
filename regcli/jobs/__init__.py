"""Jobs of many runs: a run on disk (identity, plan, claim, outcome), the runner and its groups,
the CPU process pool, the sweep's grid and the pruned runs' plans.
"""
