"""The studies: each study's numbers and its report side by side (the four variants, the path,
the path under shift, the atlas, pruning), the statistics they share, weights and timings,
and `regcli report`, which writes every figure and generated section.
"""
