r"""DRAEM+SSPCAB on your own images: a first real run, on CPU or on one GPU.

Usage (the folder layout is the README's "Your own images")::

    python -m train.main --config=configs/draem_folder.py:cpu --workdir=workdirs/mine \
        --config.data.train_dir=DIR/train --config.data.test_dir=DIR/test \
        [--config.data.mask_dir=DIR/ground_truth]

``:cpu`` (default): 128x128 images, widths 32/16, batch 8, 2,000 steps (about 300 epochs of a
folder of 50 normal images). Expected wall time on 2 idle x86 cores (AMD EPYC, AVX-512):
about 35-40 minutes, from a measured 1.06 s per step (steps 20-40 of a 60-step run of this
config on 128x128 images, after compilation) plus checkpoints and the final evaluation.

``:gpu``: the paper's network and image size (256x256, widths 128/64, batch 8, Adam 1e-4),
10,000 steps (about 1,600 epochs of 50 images; DRAEM trains 700 epochs of MVTec AD's 200-400).
Expected wall time on one recent GPU: 10-20 minutes, estimated from the 9.0 TFLOP of a
paper-size step at 50-100 TFLOP/s sustained in float32; not measured.

Both hold out 10 % of the training images to calibrate the thresholds, and draw anomaly sources
from scikit-image's bundled photographs (offline). With DTD at hand,
``--config.data.anomaly_sources=dtd`` is the paper's choice. Textures whose defects are mostly
structural (a bent or swirled pattern with the texture's own colours) are the hardest case at
any budget.

``:cpu`` scores the model's map fused with local statistics (``calibration.
fuse_local_statistics``; the run prints the model's own figures too). On an unseen wood texture
at 128x128 (one run, docs/recipe.md, "The folder recipe on a held-out texture") the network
alone was below a learning-free baseline (image / pixel AUROC 62.3 / 38.0 against 72.0 / 77.4)
and the fused detector well above the network (86.3 / 72.2). ``:gpu`` leaves it off: not
measured. For a folder in the MVTec layout (``ROOT/NAME/{train,test,ground_truth}``) compare
with ``python -m benchmarks.local_baseline --dataset folder --root ROOT --categories NAME``.
"""

from configs import default

_VARIANTS = ("cpu", "gpu")


def get_config(variant: str = "cpu"):
    if variant not in _VARIANTS:
        raise ValueError(f"configs/draem_folder.py:{variant}: use one of {_VARIANTS}.")
    c = default.get_config()
    c.data.dataset = "folder"
    c.data.anomaly_sources = "bundled"
    c.draem.sspcab_placement = "penultimate"
    c.batch_size = 8
    c.log_every_steps = 50
    if variant == "cpu":
        c.total_steps = 2000
        c.learning_rate = 1e-3  # narrow nets and a short run: the demo's rate
        c.checkpoint_every_steps = 500
        c.draem.recon_width = 32
        c.draem.disc_width = 16
        c.data.image_size = 128
        c.calibration.fuse_local_statistics = True
    else:
        c.total_steps = 10000
        c.learning_rate = 1e-4  # DRAEM's rate for its full-width networks
        c.checkpoint_every_steps = 2000
        c.draem.recon_width = 128
        c.draem.disc_width = 64
        c.data.image_size = 256
    return c
