"""regcli: what do L1 and L2 regularization do to a small CNN?"""

__version__ = "0.1.0"
