"""softmax-cli: softmax regression on Fashion-MNIST, written from scratch and concisely (D2L chapter 3).

The Python API (softmax_cli.api) is reachable from here: `import softmax_cli as sc`, then
sc.train(...), sc.load(...), sc.test_split(), and the error types (sc.SoftmaxError, sc.UsageError, ...). They are
looked up on first use (PEP 562), so importing the package imports neither torch nor the CLI.
"""

__version__ = "0.1.0"

# Name -> the module that defines it; imported when the name is first used.
_LAZY = {
    "train": "softmax_cli.api",
    "load": "softmax_cli.api",
    "test_split": "softmax_cli.api",
    "Model": "softmax_cli.api",
    "TrainResult": "softmax_cli.api",
    "SoftmaxError": "softmax_cli.errors",
    "UsageError": "softmax_cli.errors",
    "DataError": "softmax_cli.errors",
    "DataFileRejected": "softmax_cli.errors",
    "CheckpointError": "softmax_cli.errors",
    "CheckpointInUse": "softmax_cli.errors",
    "TrainingDiverged": "softmax_cli.errors",
    "ExportError": "softmax_cli.errors",
    "PictureError": "softmax_cli.errors",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'softmax_cli' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted([*globals(), *_LAZY])
