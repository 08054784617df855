"""examples/chapter3.ipynb runs from top to bottom without an error, on the real data where it is
present (see helpers.real_data_location), else on the synthetic data.

The kernel is this interpreter: a kernelspec named python3 written into a temporary folder put
first on JUPYTER_PATH, so that no kernel installed on the machine (another Python) is used.
"""

from __future__ import annotations

import json
import sys

import pytest

from tests import helpers

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

NOTEBOOK = helpers.PROJECT_ROOT / "examples" / "chapter3.ipynb"


@pytest.fixture
def data_dir(request) -> object:
    """The real data imported into a data dir where the four official files are present, else the synthetic."""
    location = helpers.real_data_location()
    if all((location / name).is_file() for name in helpers.REAL_FILES):
        return request.getfixturevalue("imported_real_data_dir")
    return request.getfixturevalue("synthetic_data_dir")


@pytest.fixture
def this_python_kernel(tmp_path, monkeypatch) -> str:
    """JUPYTER_PATH led by a folder whose python3 kernel runs this interpreter; that kernel's name."""
    from jupyter_client.kernelspec import KernelSpecManager

    spec = tmp_path / "jupyter" / "kernels" / "python3"
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": "Python 3", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    assert KernelSpecManager().get_kernel_spec("python3").argv[0] == sys.executable
    return "python3"


def test_the_chapter3_notebook_runs_without_errors(data_dir, this_python_kernel, tmp_path, monkeypatch):
    monkeypatch.setenv("SOFTMAX_DATA_DIR", str(data_dir))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # the notebook's runs folder (tempfile.mkdtemp) lands here
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        notebook,
        kernel_name=this_python_kernel,
        timeout=600,
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()  # a cell that raises fails here (CellExecutionError), naming the cell
    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.get("outputs", [])]
    assert not [output for output in outputs if output.get("output_type") == "error"]
    text = "".join(output.get("text", "") for output in outputs)
    assert "epoch 3:" in text and "test accuracy" in text
    assert list(tmp_path.glob("softmax-runs-*/scratch/*/checkpoint.pt"))
    assert list(tmp_path.glob("softmax-runs-*/concise/*/checkpoint.pt"))
