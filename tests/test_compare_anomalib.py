"""benchmarks.compare_anomalib without anomalib: argument parsing and the missing-package line."""

import subprocess
import sys

import pytest

from benchmarks import compare_anomalib


def test_defaults_are_paper_size():
    args = compare_anomalib.parse([])
    assert (args.size, args.batch, args.repeats, args.steps, args.warmup) == (256, 8, 2, 2, 1)
    assert args.anomalib_python == sys.executable and args.threads >= 1


def test_quick_options():
    args = compare_anomalib.parse(["--size", "128", "--batch", "4", "--repeats", "1"])
    assert (args.size, args.batch, args.repeats) == (128, 4, 1)
    args = compare_anomalib.parse(["--anomalib-python", "/opt/other/bin/python", "--threads", "3"])
    assert (args.anomalib_python, args.threads) == ("/opt/other/bin/python", 3)


@pytest.mark.parametrize("bad", [["--size", "100"], ["--batch", "0"], ["--size", "x"]])
def test_bad_arguments_stop_with_one_line(bad, capsys):
    with pytest.raises(SystemExit) as stop:
        compare_anomalib.parse(bad)
    assert stop.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert "error: argument --" in last or "use a" in last


def test_missing_anomalib_names_the_install_command(monkeypatch):
    monkeypatch.setattr(compare_anomalib, "ANOMALIB_MODULE", "anomalib_not_installed_here")
    with pytest.raises(SystemExit) as stop:
        compare_anomalib.require_anomalib(sys.executable)
    message = str(stop.value.code)
    assert message == compare_anomalib.INSTALL_HINT and "\n" not in message
    assert "pip install -e '.[torch]'" in message and "pip install -e '.[anomalib]'" in message
    with pytest.raises(SystemExit, match=r"\.\[anomalib\]"):
        compare_anomalib.require_anomalib("/no/such/python")
    monkeypatch.setattr(compare_anomalib, "ANOMALIB_MODULE", "json")  # importable: no stop
    compare_anomalib.require_anomalib(sys.executable)


def test_script_prints_the_line_and_runs_nothing(tmp_path):
    # A Python without anomalib: a fresh virtual environment would be slow, so an interpreter
    # that cannot import anything is faked by a script answering every probe with failure.
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\nexit 1\n")
    fake.chmod(0o755)
    cmd = [sys.executable, "-m", "benchmarks.compare_anomalib", "--anomalib-python", str(fake)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.strip() == compare_anomalib.INSTALL_HINT
    assert "repeat" not in proc.stdout  # no side was started


def test_summary_of_the_logged_128_run():
    # The two repeats of a 128x128 run: medians over all four steps and per-repeat ratios.
    runs = {
        "ours": [
            {"step_s": [129.628, 82.016], "peak_rss_gib": 4.51},
            {"step_s": [54.857, 52.753], "peak_rss_gib": 4.11},
        ],
        "anomalib": [
            {"step_s": [183.382, 163.136], "peak_rss_gib": 3.79},
            {"step_s": [81.269, 77.657], "peak_rss_gib": 3.82},
        ],
    }
    assert compare_anomalib.summary(runs) == (
        "ours 68.44 s/step, anomalib 122.20 s/step, ratio ours/anomalib 0.56 (per repeat: "
        "0.61, 0.68); peak RSS ours 4.51 GiB, anomalib 3.82 GiB"
    )
