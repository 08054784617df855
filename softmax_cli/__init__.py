"""softmax-cli: softmax regression on Fashion-MNIST, written from scratch and concisely (D2L chapter 3)."""

__version__ = "0.1.0"
