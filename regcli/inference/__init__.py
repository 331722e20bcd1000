"""Models in use: the PyTorch and onnxruntime backends, ONNX export and sizes, evaluation, the
batch prediction job, untrusted inputs and the preprocessing of photos, scoring.
"""
