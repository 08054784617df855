"""The dataset: its facts, the IDX format and its checks, verification, download and import, data
folders, the splits as tensors and batches, and a user's own pictures made to look like them."""
