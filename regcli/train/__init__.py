"""Training: the one trainer of a group of 1..K models, its epochs judged, the rotation
augmentation, and which device trains how many models on how many threads.
"""
