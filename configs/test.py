"""A tiny config for tests: a handful of steps of a very narrow DRAEM on 32x32 images."""

from configs import default


def get_config():
    c = default.get_config()
    c.total_steps = 4
    c.batch_size = 4
    c.learning_rate = 1e-3
    c.checkpoint_every_steps = 2
    c.log_every_steps = 1
    c.keep_checkpoints = 3
    c.draem.recon_width = 8
    c.draem.disc_width = 8
    c.data.dataset = "synthetic"
    c.data.image_size = 32
    c.data.eval_batch_size = 8
    # Never 'auto': a TFDS dtd prepared in the user's home would change what the tests train on.
    c.data.anomaly_sources = "perlin"
    return c
