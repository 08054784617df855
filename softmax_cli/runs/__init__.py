"""Runs on disk: checkpoints and their format, run folders and their summaries, the histories `plot` reads,
and the model files `export` writes (ONNX, torch.export)."""
