"""Shared pytest configuration: CPU only, persistent compilation cache, one trained run."""

import os

import pytest

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault(
    "JAX_COMPILATION_CACHE_DIR",
    os.path.join(os.path.expanduser("~"), ".cache", "sspcab_jax", "jax_cache"),
)

import jax  # noqa: E402

jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


@pytest.fixture(scope="session")
def trained_run_printed(tmp_path_factory):
    """One trained, calibrated run of configs/test.py: ``(workdir, final metrics, stdout)``.

    Shared by the command tests; tests read it and write their outputs elsewhere.
    """
    import contextlib
    import io

    from configs import test as test_config
    from sspcab_jax.training import loop

    workdir = tmp_path_factory.mktemp("run")
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        final = loop.train_and_evaluate(test_config.get_config(), workdir)
    return workdir, final, printed.getvalue()


@pytest.fixture(scope="session")
def trained_run(trained_run_printed):
    """The shared trained run: ``(workdir, final metrics of training)``."""
    return trained_run_printed[:2]


@pytest.fixture
def recalibrated_on_other_test_split(tmp_path):
    """A function: ``workdir`` -> a copy recalibrated with another TEST split (``train.calibrate``).

    The copy holds the checkpoints and a config whose ``data.test_dir`` / ``mask_dir`` point at
    a freshly written embedded tree of another seed; its ``calibration.json`` must not change.
    """
    import json
    import shutil

    from sspcab_jax.data import write_synthetic_mvtec
    from train import calibrate as calibrate_command

    def recalibrate(workdir, category="brick", seed=9):
        other = tmp_path / "other"
        write_synthetic_mvtec(other, categories=[category], num_train=2, seed=seed)
        copy = tmp_path / "copy"
        shutil.copytree(workdir / "checkpoints", copy / "checkpoints")
        config = json.loads((workdir / "config.json").read_text())
        config["data"]["test_dir"] = str(other / category / "test")
        config["data"]["mask_dir"] = str(other / category / "ground_truth")
        (copy / "config.json").write_text(json.dumps(config))
        calibrate_command.main(["calibrate", f"--workdir={copy}", "--which=latest"])
        return copy

    return recalibrate
