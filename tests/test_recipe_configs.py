"""The recipes a user starts from: valid configs whose docstrings state their own values."""

import pytest

from configs import draem_folder
from sspcab_jax.training.tasks import validate_config


@pytest.mark.parametrize(
    "variant, size, widths, steps, lr, fused",
    [
        ("cpu", 128, (32, 16), "2,000", 1e-3, True),
        ("gpu", 256, (128, 64), "10,000", 1e-4, False),
    ],
)
def test_folder_recipe_is_valid_and_documented(variant, size, widths, steps, lr, fused):
    c = draem_folder.get_config(variant)
    validate_config(c)
    assert c.data.dataset == "folder" and c.data.image_size == size
    assert (c.draem.recon_width, c.draem.disc_width) == widths and c.learning_rate == lr
    assert c.total_steps == int(steps.replace(",", ""))
    doc = draem_folder.__doc__
    assert f"{size}x{size}" in doc and f"widths {widths[0]}/{widths[1]}" in doc
    assert f"{steps} steps" in doc
    assert c.calibration.fuse_local_statistics is fused


def test_folder_recipe_names_its_variants():
    with pytest.raises(ValueError, match=r"draem_folder.py:tpu: use one of \('cpu', 'gpu'\)"):
        draem_folder.get_config("tpu")
