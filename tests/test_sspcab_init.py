"""SSPCAB initialisation inside DRAEM: PyTorch's default, or DRAEM's ``weights_init`` N(0, 0.02)."""

import jax
import numpy as np
import pytest
from scipy import stats

from configs import draem_mvtec
from configs import test as test_config
from sspcab_jax.layers import SSPCAB
from sspcab_jax.models.common import sspcab_kernel_init
from sspcab_jax.training import tasks

CHANNELS = 256  # 4 corners x 256 x 256 = 262,144 kernel samples


def _block_variables(init_scheme):
    block = SSPCAB(kernel_init=sspcab_kernel_init(init_scheme))
    x = np.zeros((1, 8, 8, CHANNELS), np.float32)
    return block.init(jax.random.key(3), x)["params"]


def test_official_corner_kernels_are_normal_with_std_0_02():
    kernel = np.asarray(_block_variables("official")["masked_conv"]["kernel"], np.float64)
    assert kernel.shape == (4, 1, 1, CHANNELS, CHANNELS)
    n = kernel.size
    # Standard errors: mean 0.02 / sqrt(n) = 4e-5, std 0.02 / sqrt(2n) = 2.8e-5; five of each.
    assert abs(kernel.mean()) < 5 * 0.02 / np.sqrt(n)
    assert abs(kernel.std() - 0.02) < 5 * 0.02 / np.sqrt(2 * n)
    assert stats.kstest(kernel.ravel(), stats.norm(0.0, 0.02).cdf).pvalue > 1e-3


def test_official_keeps_pytorch_biases_and_attention():
    official, pytorch = _block_variables("official"), _block_variables("pytorch")
    bound = 1 / np.sqrt(CHANNELS)  # fan_in of a 1x1 corner conv
    bias = np.asarray(official["masked_conv"]["bias"], np.float64)
    assert bias.shape == (4, CHANNELS)
    assert np.abs(bias).max() <= bound and np.abs(bias).max() > 0.95 * bound
    # U(-b, b) has std b / sqrt(3); 1,024 samples give a relative standard error of ~2.2 %.
    assert abs(bias.std() / (bound / np.sqrt(3)) - 1) < 0.1
    assert stats.kstest(bias.ravel(), stats.uniform(-bound, 2 * bound).cdf).pvalue > 1e-3
    # Only the corner kernels change; the PyTorch-default kernel is the uniform one.
    flat_o = dict(jax.tree_util.tree_leaves_with_path(official))
    flat_p = dict(jax.tree_util.tree_leaves_with_path(pytorch))
    for path, value in flat_p.items():
        same = np.array_equal(np.asarray(value), np.asarray(flat_o[path]))
        assert same == ("kernel" not in jax.tree_util.keystr(path) or "se" in str(path)), path
    kernel = np.asarray(pytorch["masked_conv"]["kernel"])
    assert np.abs(kernel).max() <= bound and abs(kernel.std() / (bound / np.sqrt(3)) - 1) < 0.01


def _draem_params(**draem_fields):
    config = test_config.get_config()
    config.draem.update(draem_fields)
    task = tasks.get_task(config)
    x = np.zeros(task.input_shape(2), np.float32)
    return task.create_model().init(jax.random.key(0), x, train=False)["params"]


def test_pytorch_option_leaves_the_model_unchanged():
    params = _draem_params(sspcab_init="pytorch")
    # Golden values of the test config's parameters (key 0) from before the option existed.
    # JAX releases round the float32 initialisers differently in the last bits (jax 0.10 vs 0.12:
    # 6e-9 relative on the total), so 1e-7; any change of initialiser moves these by far more.
    total = sum(float(np.abs(np.asarray(x, np.float64)).sum()) for x in jax.tree.leaves(params))
    block = params["reconstructive"]["dec_db4_1"]["sspcab"]["masked_conv"]["kernel"]
    assert total == pytest.approx(13073.30890656832, rel=1e-7)
    assert float(np.asarray(block, np.float64).sum()) == pytest.approx(0.6544282783379458, 1e-6)


def test_official_option_reaches_both_penultimate_blocks_only():
    pytorch, official = _draem_params(sspcab_init="pytorch"), _draem_params(sspcab_init="official")
    for net in ("reconstructive", "discriminative"):
        kernel = np.asarray(official[net]["dec_db4_1"]["sspcab"]["masked_conv"]["kernel"])
        assert abs(kernel.std() - 0.02) < 0.004  # 256 samples: standard error 0.0009
        old = np.asarray(pytorch[net]["dec_db4_1"]["sspcab"]["masked_conv"]["kernel"])
        assert kernel.std() < 0.5 * old.std()  # U(+-1/sqrt(8)) has std 0.204
    changed = [
        jax.tree_util.keystr(path)
        for (path, a), b in zip(
            jax.tree_util.tree_leaves_with_path(pytorch), jax.tree.leaves(official), strict=True
        )
        if not np.array_equal(np.asarray(a), np.asarray(b))
    ]
    assert len(changed) == 2 and all("masked_conv']['kernel']" in p for p in changed)


def test_config_records_and_checks_the_option():
    config = draem_mvtec.get_config("bottle")
    assert config.draem.sspcab_init == "official"
    assert tasks.get_task(config).summary()["sspcab_init"] == "official"
    bad = test_config.get_config()
    bad.draem.sspcab_init = "xavier"
    with pytest.raises(ValueError, match=r"draem.sspcab_init"):
        tasks.validate_config(bad)
