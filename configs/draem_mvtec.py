"""DRAEM+SSPCAB on one MVTec AD category at the paper's sizes and the official recipe.

Usage: ``--config=configs/draem_mvtec.py:bottle --config.data.root=/path/to/mvtec``.
Official recipe (DRAEM's README and ``train_DRAEM.py``): batch 8, Adam 1e-4, 700 epochs with
x0.2 decay at 80 % and 90 %.
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
    c.data.dataset = "mvtec"
    c.data.category = category
    c.data.image_size = 256
    return c
