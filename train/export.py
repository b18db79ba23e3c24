"""A trained run as one deployable ``.jaxexport`` file (see ``docs/export.md``).

    python -m train.export --workdir=<run> --out=detector.jaxexport

Flags:
  --workdir    the training run's directory (calibrated: its thresholds are baked in).
  --out        the file to write.
  --which      'best' (default) or 'latest' checkpoint.
  --platforms  comma-separated among cpu, cuda, rocm, tpu; cpu is always added, so the file
               also runs on any machine. No accelerator is needed to lower for one.
  --what       'detector' (default: preprocessing, network, scoring, normalisation and
               thresholds) or 'network' (the bare model: float images -> its raw outputs).
  --tile_size  tile side in image pixels: export the tiled detector (as train.predict's
               --tile_size) for images of --input_size.
  --tile_overlap  pixels shared by neighbouring tiles (default 0).
  --input_size H,W: the size of the images a tiled detector will score (needed with
               --tile_size; images smaller than a tile are resized as without tiling).

Run the file with ``sspcab_jax.export.load(path)`` (JAX and NumPy; no Flax).
"""

from __future__ import annotations

import logging
import pathlib
from collections.abc import Sequence
from typing import Any

from absl import flags

from sspcab_jax.detector import Detector
from sspcab_jax.export import export_detector, export_network
from sspcab_jax.training.fusion import saved_fusion_expected
from sspcab_jax.training.restore import WHICH, load_run, read_run_config
from sspcab_jax.training.tasks import get_task
from train import cli

logger = logging.getLogger(__name__)
WHAT = ("detector", "network")


def define_flags(flag_values: flags.FlagValues, argv: Sequence[str]) -> None:
    """The flags of ``train.export``."""
    del argv
    fv = flag_values
    flags.DEFINE_string("workdir", None, "Directory of a training run.", flag_values=fv)
    flags.DEFINE_string("out", None, "The .jaxexport file to write.", flag_values=fv)
    flags.DEFINE_enum("which", "best", WHICH, "Checkpoint to export.", flag_values=fv)
    flags.DEFINE_list("platforms", ["cpu"], "Platforms to lower for.", flag_values=fv)
    flags.DEFINE_enum("what", "detector", WHAT, "What to export.", flag_values=fv)
    flags.DEFINE_integer("tile_size", None, "Tile side in image pixels.", flag_values=fv)
    flags.DEFINE_integer("tile_overlap", 0, "Pixels shared by neighbouring tiles.", flag_values=fv)
    flags.DEFINE_list(
        "input_size", None, "H,W of the images a tiled detector scores.", flag_values=fv
    )
    flags.mark_flags_as_required(["workdir", "out"], flag_values=fv)


def parse_input_size(values: Sequence[str] | None) -> tuple[int, int] | None:
    """``--input_size=H,W`` as ``(H, W)``; CommandError naming the flag if malformed."""
    if values is None:
        return None
    try:
        height, width = (int(v) for v in values)
    except ValueError:
        height = width = 0
    if min(height, width) < 1:
        raise cli.CommandError(f"--input_size must be H,W (two positive integers), got {values}.")
    return height, width


def run_metadata(workdir: str, which: str) -> dict[str, Any]:
    """The run's model summary (family, SSPCAB placement, ...) stored with the artifact."""
    config = read_run_config(workdir)
    summary = get_task(config).summary()
    placement = summary.get("sspcab_placement", summary.get("placement"))
    return {"placement": placement, "run": summary, "checkpoint": which}


def export_run_network(workdir: str, which: str, out: pathlib.Path, platforms, metadata):
    """Exports the run's bare model: ``float32 [N, H, W, C] -> (reconstruction[, logits])``."""
    config, model, state, _ = load_run(workdir, which)
    variables = {"params": state.params}
    if state.batch_stats:
        variables["batch_stats"] = state.batch_stats
    size = config.data.image_size
    size = (size, size) if isinstance(size, int) else tuple(size)
    if hasattr(model, "in_channels"):  # DRAEM: (reconstruction, logits)
        channels, outputs = model.in_channels, ("reconstruction", "logits")

        def apply(v, x):
            return model.apply(v, x, train=False)

    else:  # the auto-encoder: its reconstruction
        channels, outputs = model.channels, ("reconstruction",)

        def apply(v, x):
            return (model.apply(v, x),)

    return export_network(
        apply, variables, size, channels, out, platforms, outputs=outputs, metadata=metadata
    )


def main(argv: Sequence[str]) -> pathlib.Path:
    """Writes the artifact; returns its path."""
    fv = cli.parse_flags(define_flags, argv, __doc__)
    input_size = parse_input_size(fv.input_size)
    if fv.what == "network" and (fv.tile_size is not None or input_size is not None):
        raise cli.CommandError("--tile_size and --input_size apply to --what=detector only.")
    platforms = ["cpu", *(p for p in fv.platforms if p.strip().lower() != "cpu")]
    out = pathlib.Path(fv.out)
    cli.require_writable(out.parent, "--out")
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        metadata = run_metadata(fv.workdir, fv.which)
        if fv.what == "network":
            written = export_run_network(fv.workdir, fv.which, out, platforms, metadata)
        else:
            # A detector artifact scores what Detector.from_workdir scores.
            metadata["local_fusion"] = saved_fusion_expected(read_run_config(fv.workdir))
            detector = Detector.from_workdir(
                fv.workdir, fv.which, tile_size=fv.tile_size, tile_overlap=fv.tile_overlap
            )
            written = export_detector(
                detector, out, platforms, input_size=input_size, metadata=metadata
            )
    except ValueError as error:  # bad platforms or tiling: the message names the fix
        raise cli.CommandError(str(error)) from error
    logger.info("Wrote %s (%s, platforms %s).", written, fv.what, ",".join(platforms))
    print(written)
    return written


if __name__ == "__main__":
    cli.run(main)
