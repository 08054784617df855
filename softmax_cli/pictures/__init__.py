"""Pictures: the figures drawn with matplotlib on request, and TensorBoard logging during training."""
