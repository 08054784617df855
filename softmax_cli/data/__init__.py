"""The dataset: its facts, the IDX format and its checks, verification, download and import, data
folders, and the splits as tensors and batches."""
