"""`python -m softmax_cli` runs the same app as the `softmax` console script."""

from softmax_cli.cli import app

if __name__ == "__main__":
    app(prog_name="softmax")
