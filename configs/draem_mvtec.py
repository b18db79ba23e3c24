"""DRAEM+SSPCAB on one MVTec AD category at the paper's sizes (DRAEM's README: lr 1e-4, batch 8).

Usage: ``--config=configs/draem_mvtec.py:bottle --config.data.root=/path/to/mvtec``.
Official recipe: batch 8, Adam 1e-4, 700 epochs with x0.2 decay at 80 % and 90 %; data handled
as DRAEM's ``data_loader.py`` / ``test_DRAEM.py`` do: OpenCV bilinear resize, the official
ground-truth mask rule, imgaug's brightness augmenter and every DTD image as anomaly source
(``--config.data.anomaly_sources=perlin`` trains without DTD, knowingly).
"""

from configs import default


def get_config(category: str = "bottle"):
    c = default.get_config()
    c.epochs = 700
    c.batch_size = 8
    c.learning_rate = 1e-4
    c.checkpoint_every_steps = 2000
    c.eval_every_steps = 0
    c.draem.recon_width = 128
    c.draem.disc_width = 64
    c.draem.sspcab_placement = "penultimate"
    c.draem.sspcab_init = "official"  # DRAEM's weights_init also reaches the block's convs
    c.data.dataset = "mvtec"
    c.data.category = category
    c.data.image_size = 256
    c.data.resize = "cv2"
    c.data.mask_rule = "official"
    c.data.anomaly_sources = "dtd"  # required: stop with instructions when DTD is missing
    c.data.max_anomaly_sources = 0  # all of them
    # All 5,640 DTD images through a device bank of 512 re-drawn every 128 steps (128 x 8 samples
    # draw each bank image about twice; the official loader reads a fresh one per sample).
    c.data.texture_bank_size = 512
    c.data.texture_refresh_every = 128
    c.data.dtd_split = "all"
    c.synthesis.brightness = "official"
    return c
