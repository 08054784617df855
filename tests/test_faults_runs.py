"""Issue 10, a training run under faults: full disks, signals, stops at awkward moments, unwritable stdout.

Grouped by the issue's failure classes. Signals are real (a `python -m softmax_cli train`
subprocess, waited for with bounded polls); a full disk is simulated by making the writes
of TensorBoard's record writer, the run summary or the checkpoint fail with ENOSPC.
"""

from __future__ import annotations

import errno
import json
import math
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from softmax_cli import training
from softmax_cli.runs import checkpoint as ckpt
from softmax_cli.runs import folders as runs
from tests import helpers
from tests.helpers import assert_clean, only_json, run_train
from tests.test_faults_files import POSIX_ONLY, one_error, saved_epoch, start_training, wait_for


def no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def warnings_in(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("warning:")]


def leftovers(folder: Path) -> list[str]:
    """Temporary or lock files anywhere under folder."""
    return [str(path) for path in folder.rglob("*") if path.name.endswith((".tmp", ".lock"))]


# --------------------------------------------------------------------------- 3. a full disk under the logs


@pytest.mark.parametrize("good_writes", [0, 12], ids=["at-start", "mid-run"])
def test_training_survives_tensorboard_failing_on_a_full_disk(good_writes, synthetic_data_dir, tmp_path, monkeypatch):
    """TensorBoard's record writer (in its own thread) fails after `good_writes` records: the run goes
    on to the end with its checkpoint, says so once, and its final message says the logs are incomplete."""
    from tensorboard.summary.writer.record_writer import RecordWriter

    real_write, writes = RecordWriter.write, []

    def write(self, data):
        writes.append(len(data))
        if len(writes) > good_writes:
            no_space()
        return real_write(self, data)

    monkeypatch.setattr(RecordWriter, "write", write)
    target = tmp_path / "elsewhere" / "c.pt"
    # Without --json: the final hints, for a person, say the logs are incomplete.
    result = run_train(synthetic_data_dir, tmp_path, "--epochs", "3", "--checkpoint", target)
    assert_clean(result)
    assert result.exit_code == 0, result.output
    assert ckpt.load_checkpoint(target)["epoch"] == 3 and "Done: " in result.stdout
    (warning,) = warnings_in(result)
    assert "TensorBoard logging stopped: No space left on device" in warning and "training goes on" in warning
    assert "TensorBoard (incomplete" in helpers.flat(result.stderr)


def test_training_survives_the_run_summary_failing_on_a_full_disk(synthetic_data_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(runs, "atomic_write", no_space)
    payload_result = run_train(synthetic_data_dir, tmp_path, "--epochs", "2", "--json")
    assert payload_result.exit_code == 0, payload_result.output
    assert only_json(payload_result)["epochs"] == 2
    (warning,) = warnings_in(payload_result)
    assert "summary.json" in warning and "No space left on device" in warning


def test_a_checkpoint_that_cannot_be_written_ends_the_run_in_one_line(synthetic_data_dir, tmp_path, monkeypatch):
    """When the disk is full under the checkpoint itself, the run cannot keep its promise: one error
    line, exit 1, and no half-made run folder."""
    from softmax_cli import atomic

    monkeypatch.setattr(atomic.os, "replace", no_space)
    result = run_train(synthetic_data_dir, tmp_path, "--epochs", "2", "--json")
    assert result.exit_code == 1
    one_error(result, "cannot write the checkpoint", "No space left on device")
    assert not (tmp_path / "runs").exists()


# --------------------------------------------------------------------------- 3. stdout that cannot be written


def test_json_to_a_full_stdout_is_one_line_and_exit_1(synthetic_data_dir, tmp_path):
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full on this system")
    path = helpers.train_checkpoint(synthetic_data_dir, tmp_path, "--epochs", "1")[0]
    with open("/dev/full", "w") as full:
        done = subprocess.run(
            [sys.executable, "-m", "softmax_cli", "eval", str(path), "--data-dir", str(synthetic_data_dir), "--json"],
            cwd=helpers.PROJECT_ROOT,
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
        )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr and "Exception ignored" not in done.stderr
    assert done.stderr.strip().splitlines()[-1] == "error: cannot write the output to stdout: No space left on device"


@POSIX_ONLY
def test_json_to_a_closed_pipe_ends_quietly_with_141(synthetic_data_dir, tmp_path):
    path = helpers.train_checkpoint(synthetic_data_dir, tmp_path, "--epochs", "1")[0]
    command = [sys.executable, "-m", "softmax_cli", "eval", str(path), "--data-dir", str(synthetic_data_dir), "--json"]
    process = subprocess.Popen(
        command, cwd=helpers.PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    process.stdout.close()  # the reader is gone before anything was written, as after `| head -c0`
    stderr = process.stderr.read()
    assert process.wait(timeout=120) == 141  # 128 + SIGPIPE, as for tools that SIGPIPE ends
    assert stderr == ""


# --------------------------------------------------------------------------- 5. signals and stops


@POSIX_ONLY
@pytest.mark.parametrize("stop", ["SIGTERM", "SIGHUP"])
def test_sigterm_stops_like_ctrl_c(stop, synthetic_data_dir, tmp_path):
    number = getattr(signal, stop)
    target = tmp_path / "c.pt"
    process = start_training(synthetic_data_dir, tmp_path, "--epochs", "100000", "--checkpoint", target, "--json")
    # After the first epoch's summary, every log of that epoch is written: the stop lands in later work.
    wait_for(lambda: (runs.read_summary(run_folder(tmp_path)) or {}).get("epochs_done", 0) >= 1, process)
    process.send_signal(number)
    out, err = process.communicate(timeout=120)

    assert process.returncode == 128 + number, err
    assert "Traceback" not in err
    payload = json.loads(out)
    saved = ckpt.load_checkpoint(target)["epoch"]
    assert payload["interrupted"] is True and payload["epochs"] == saved >= 1
    text = helpers.flat(err)
    assert f"Interrupted: the checkpoint of epoch {saved}, the last completed, is {target}" in text
    command = text[text.index("Continue with: ") + len("Continue with: ") :].split()
    assert command[:5] == ["softmax", "train", "--resume", str(target), "--epochs"]
    log_dir = Path(payload["log_dir"])
    summary = runs.read_summary(log_dir)
    assert summary["status"] == "interrupted" and summary["epochs_done"] == saved
    assert_tensorboard_closed(log_dir, saved)
    assert leftovers(tmp_path) == []


def run_folder(tmp_path: Path) -> Path:
    folders = list((tmp_path / "runs" / "scratch").glob("*")) if (tmp_path / "runs" / "scratch").is_dir() else []
    return folders[0] if folders else tmp_path / "no-run-yet"


def assert_tensorboard_closed(log_dir: Path, epochs: int) -> None:
    """The event files hold every epoch's curve and the confusion matrix on_train_end writes just before closing."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(log_dir))
    events.Reload()
    steps = [event.step for event in events.Scalars("accuracy/test")]
    assert steps == list(range(1, epochs + 1)) or steps == list(range(1, epochs)), steps
    assert "confusion_matrix/text_summary" in events.Tags()["tensors"]


@POSIX_ONLY
def test_a_second_ctrl_c_while_stopping_keeps_the_report_true(synthetic_data_dir, tmp_path):
    target = tmp_path / "c.pt"
    process = start_training(synthetic_data_dir, tmp_path, "--epochs", "100000", "--checkpoint", target, "--json")
    wait_for(lambda: saved_epoch(target) >= 2, process)
    process.send_signal(signal.SIGINT)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert "Traceback" not in err and "before the first epoch" not in err
    saved = ckpt.load_checkpoint(target)["epoch"]
    assert json.loads(out)["epochs"] == saved >= 2
    assert f"the checkpoint of epoch {saved}" in helpers.flat(err)
    assert leftovers(tmp_path) == []


def test_ctrl_c_during_a_checkpoint_write_never_reports_the_unsaved_epoch(synthetic_data_dir, tmp_path, monkeypatch):
    real_save, saves = torch.save, []

    def save_interrupted_on_the_second_epoch(obj, handle, *args, **kwargs):
        saves.append(1)
        if len(saves) == 2:
            handle.write(b"half a checkpoint")
            raise KeyboardInterrupt
        return real_save(obj, handle, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save_interrupted_on_the_second_epoch)
    target = tmp_path / "c.pt"
    result = run_train(synthetic_data_dir, tmp_path, "--epochs", "5", "--checkpoint", target, "--json")
    monkeypatch.undo()
    assert result.exit_code == 130
    payload = only_json(result)
    assert payload["interrupted"] and payload["epochs"] == 1 and [e["epoch"] for e in payload["history"]] == [1]
    assert ckpt.load_checkpoint(target)["epoch"] == 1
    assert runs.read_summary(Path(payload["log_dir"]))["epochs_done"] == 1
    assert "the checkpoint of epoch 1" in helpers.flat(result.stderr)
    assert leftovers(tmp_path) == []


class StopWhileClosing(training.TrainingCallbacks):
    """Ctrl-C raised from on_train_end, as a second Ctrl-C would land while the logs close."""

    def on_train_end(self, result, model):
        raise KeyboardInterrupt


class Closed(training.TrainingCallbacks):
    closed = False

    def on_train_end(self, result, model):
        self.closed = True


@pytest.mark.parametrize("planned", [2, 5])
def test_a_stop_while_closing_leaves_the_result_true(planned, synthetic_data_dir, tmp_path):
    """fit keeps what was saved, and every callback still closes: for a finished run the stop changes
    nothing, for an unfinished one (interrupted by the first stop) the result says interrupted."""
    closed = Closed()
    interrupt = [helpers.InterruptAt(epoch=2)] if planned > 2 else []
    callbacks = training.CallbackList([StopWhileClosing(), *interrupt, closed])
    result = helpers.fit(synthetic_data_dir, tmp_path, callbacks, epochs=planned)
    assert closed.closed and result.epochs_done == 2 and len(result.history) == 2
    assert result.interrupted == (planned > 2)
    assert ckpt.load_checkpoint(result.checkpoint)["epoch"] == 2


@pytest.mark.parametrize(
    "how", ["diverged", "interrupted", "interrupted-resume"], ids=["diverged", "interrupted", "interrupted-resume"]
)
def test_a_run_that_completes_no_epoch_leaves_no_run_folder(how, synthetic_data_dir, tmp_path, monkeypatch):
    options = ["--epochs", "3"]
    if how == "diverged":
        options += ["--naive-softmax", "--lr", "1e4"]
    else:

        def interrupted(*args, **kwargs):
            raise KeyboardInterrupt

        if how == "interrupted-resume":
            first = helpers.train_checkpoint(synthetic_data_dir, tmp_path / "first", "--epochs", "1")[0]
            options = ["--resume", first, "--epochs", "3"]
        monkeypatch.setattr(training, "train_epoch", interrupted)
    result = run_train(synthetic_data_dir, tmp_path, *options, "--json")
    assert_clean(result)
    assert result.exit_code == (1 if how == "diverged" else 130)
    assert not (tmp_path / "runs").exists()
    if how == "interrupted":
        payload = only_json(result)
        assert payload["interrupted"] and payload["epochs"] == 0 and payload["checkpoint"] is None
        assert "before the first epoch finished: no checkpoint was written" in helpers.flat(result.stderr)
    if how == "interrupted-resume":
        payload = only_json(result)
        assert payload["interrupted"] and payload["epochs"] == 1 and payload["log_dir"] is None
        assert "still holds epoch 1" in helpers.flat(result.stderr)
        assert "--resume" in helpers.flat(result.stderr)


# --------------------------------------------------------------------------- 6. honest output


def strict_json(text: str) -> dict:
    def refuse(constant):
        raise ValueError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


def test_json_never_holds_nan_or_infinity(synthetic_data_dir, tmp_path):
    path = helpers.train_checkpoint(synthetic_data_dir, tmp_path / "first", "--epochs", "1")[0]
    loaded = ckpt.load_checkpoint(path)
    loaded["history"][0].update(train_loss=math.nan, test_loss=math.inf, train_acc=-math.inf)
    ckpt.save_checkpoint(loaded, path)
    result = run_train(synthetic_data_dir, tmp_path, "--resume", path, "--epochs", "2", "--json")
    assert result.exit_code == 0, result.output
    first = strict_json(result.stdout)["history"][0]
    assert (first["train_loss"], first["test_loss"], first["train_acc"]) == (None, None, None)


def test_a_damaged_batch_order_state_is_called_damaged_not_another_device(synthetic_data_dir, tmp_path):
    path = helpers.train_checkpoint(synthetic_data_dir, tmp_path / "first", "--epochs", "1")[0]
    loaded = ckpt.load_checkpoint(path)
    loaded["rng_state"]["shuffle"] = torch.zeros_like(loaded["rng_state"]["shuffle"])  # a CPU state torch refuses
    ckpt.save_checkpoint(loaded, path)
    result = run_train(synthetic_data_dir, tmp_path, "--resume", path, "--epochs", "2")
    assert result.exit_code == 1
    line = one_error(result, "damaged")
    assert "drawn on" not in line


# --------------------------------------------------------------------------- 7. usage errors found with the data


@pytest.mark.parametrize("fraction", ["0.0001", "0.9999"])
def test_a_validation_split_that_leaves_no_examples_is_a_usage_error(fraction, synthetic_data_dir, tmp_path):
    result = run_train(synthetic_data_dir, tmp_path, "--epochs", "1", "--val-split", fraction, "--json")
    assert result.exit_code == 2, result.output
    assert_clean(result)
    assert "--val-split" in result.stderr and "600 train images" in helpers.flat(result.stderr)
    assert result.stdout == "" and not (tmp_path / "runs").exists()


@POSIX_ONLY
def test_sigterm_as_training_starts_exits_143_and_says_what_was_kept(synthetic_data_dir, tmp_path):
    """A stop just as the run folder appears lands in the data loading or in the first epochs:
    either way exit 143, no traceback, and the message matches what is on disk."""
    target = tmp_path / "c.pt"
    process = start_training(synthetic_data_dir, tmp_path, "--epochs", "100000", "--checkpoint", target)
    wait_for(lambda: (tmp_path / "runs").exists(), process)
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 143, err
    assert "Traceback" not in err + out  # stdout holds the settings header (and any finished epoch)
    if "before the first epoch finished" in err:
        assert not target.exists() and not (tmp_path / "runs").exists()
    else:
        assert f"the checkpoint of epoch {saved_epoch(target)}" in helpers.flat(err)
    assert leftovers(tmp_path) == []


# --------------------------------------------------------------------------- 5. the stop rules themselves


def test_a_stop_inside_an_uninterrupted_step_waits_for_its_end_and_later_ones_are_ignored():
    from softmax_cli import stops

    stops.reset()
    steps = []
    with pytest.raises(KeyboardInterrupt):
        with stops.uninterrupted():
            stops.request_stop(signal.SIGTERM, None)  # what the handler does when the signal lands here
            steps.append("finished")
    assert steps == ["finished"] and stops.received() == signal.SIGTERM
    stops.request_stop(signal.SIGINT, None)  # a second request while stopping: nothing raised
    assert stops.received() == signal.SIGTERM
    stops.reset()
    stops.closing()
    stops.request_stop(signal.SIGINT, None)  # after training ended: recorded only
    assert stops.received() == signal.SIGINT
    stops.reset()


@POSIX_ONLY
def test_a_stop_landing_in_exec_d_code_is_raised_just_after_it():
    """CPython would later end `python -m` by SIGINT for a KeyboardInterrupt that left exec()'d code
    (dataclasses are made so while modules import); the stop is raised once that code is done."""
    code = textwrap.dedent("""
        import os, signal, time
        from softmax_cli import stops
        stops.reset()
        signal.signal(signal.SIGTERM, stops.request_stop)
        inside = False
        try:
            try:
                exec("import os, signal, time\\nos.kill(os.getpid(), signal.SIGTERM)\\ntime.sleep(0.2)")
            except KeyboardInterrupt:
                inside = True
            time.sleep(30)
            print("never stopped")
        except KeyboardInterrupt:
            print("stopped inside exec" if inside else "stopped after exec")
    """)
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=helpers.PROJECT_ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.stdout.strip() == "stopped after exec", done.stderr


def test_a_checkpoint_that_does_not_fit_the_disk_is_one_error_line(synthetic_data_dir, tmp_path):
    """A real write failure, without root: a file size limit (RLIMIT_FSIZE, SIGXFSZ ignored, so a write
    past it fails with EFBIG as a full disk fails with ENOSPC). torch.save into the file would call
    it a RuntimeError of its zip writer; the checkpoint is serialized first, so the OSError says it."""
    import resource

    limit = 16 * 1024  # a checkpoint of the 784 x 10 model takes about 35 kB

    def limit_file_size() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    command = [sys.executable, "-m", "softmax_cli", "train", "--data-dir", synthetic_data_dir, "--device", "cpu"]
    command += ["--runs-dir", tmp_path / "runs", "--epochs", "2", "--checkpoint", tmp_path / "c.pt"]
    done = subprocess.run(
        [str(part) for part in command], cwd=helpers.PROJECT_ROOT, capture_output=True, text=True,
        preexec_fn=limit_file_size, timeout=300,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    (line,) = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert f"cannot write the checkpoint {tmp_path / 'c.pt'}: File too large" in line
    assert not (tmp_path / "c.pt").exists()


def test_torch_that_cannot_load_is_one_line_naming_it(synthetic_data_dir, tmp_path):
    """An address-space limit too small for torch's shared objects (`prlimit --as=2147483648`): the
    loader's "failed to map segment" becomes one line that says torch could not be loaded."""
    import resource

    def limit_address_space() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (2 * 1024**3, 2 * 1024**3))

    command = [sys.executable, "-m", "softmax_cli", "train", "--data-dir", synthetic_data_dir, "--device", "cpu"]
    command += ["--runs-dir", tmp_path / "runs", "--epochs", "1"]
    done = subprocess.run(
        [str(part) for part in command], cwd=helpers.PROJECT_ROOT, capture_output=True, text=True,
        preexec_fn=limit_address_space, timeout=300,
    )  # fmt: skip
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-2000:]
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("error: torch could not be loaded: ")


def test_after_a_stop_further_stop_signals_are_ignored_to_the_end():
    """A second Ctrl-C that lands after the command has begun to report its stop (or while the
    interpreter shuts down, when Python resets its handlers) must not kill the process by SIGINT."""
    import os
    import time

    from softmax_cli.cli.output import stop_signals

    with stop_signals():
        pass
    assert signal.getsignal(signal.SIGINT) is not signal.SIG_IGN  # no stop: the handlers come back
    with pytest.raises(KeyboardInterrupt):
        with stop_signals():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)  # the handler raises at once
    assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN and signal.getsignal(signal.SIGTERM) is signal.SIG_IGN
