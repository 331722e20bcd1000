"""The data: MNIST read from its IDX files and verified, class-balanced subsets and validation
splits drawn by the seed, and the shifted test sets.
"""
