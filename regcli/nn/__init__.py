"""The network: the CNN and which parameters L1 and L2 touch, K networks as one grouped network,
the CPU kernels that give PyTorch's results sooner, and magnitude-pruning masks.
"""
