"""SSPCAB block factories in Draem, CBR and ConvAutoencoder; variable names kept for checkpoints.

``tests/data/model_variable_paths.json`` holds the sorted variable paths and shapes of models
built with the earlier per-field API (``sspcab_kernel_size``, ``sspcab_dilation``, ...), captured
before the factory field replaced those fields; saved and converted weights depend on them.
"""

import functools
import json
import pathlib

import jax
import jax.numpy as jnp
import pytest
from flax import linen as nn

from configs import default as default_config
from sspcab_jax.layers import SSPCAB, SSPCAB_LOSS_COLLECTION
from sspcab_jax.models import (
    CBR,
    PLACEMENTS,
    POSITIONS,
    ConvAutoencoder,
    Draem,
    default_sspcab,
)

GOLDEN = json.loads(
    (pathlib.Path(__file__).parent / "data" / "model_variable_paths.json").read_text()
)
CASES = GOLDEN["cases"]
# Earlier Draem fields ``sspcab_<name>`` that now go into the factory as ``<name>``.
DRAEM_BLOCK = ("kernel_size", "dilation", "reduction_ratio", "attention", "activation")
AE_BLOCK = ("kernel_size", "reduction_ratio", "attention")


def variable_paths(model, shape, **kwargs):
    """Sorted ``'collection/module/.../leaf HxW...'`` of ``model.init`` (losses dropped)."""
    x = jax.ShapeDtypeStruct(shape, jnp.float32)
    variables = jax.eval_shape(lambda k, x: model.init(k, x, **kwargs), jax.random.key(0), x)
    variables = {k: v for k, v in variables.items() if k != SSPCAB_LOSS_COLLECTION}
    flat = jax.tree_util.tree_flatten_with_path(variables)[0]
    return sorted(
        "/".join(p.key for p in path) + " " + "x".join(map(str, leaf.shape)) for path, leaf in flat
    )


def split_block_fields(fields, names):
    """``{'sspcab_k': v, other: w}`` -> ``({'k': v}, {other: w})`` for ``k`` in ``names``."""
    block = {n: fields[f"sspcab_{n}"] for n in names if f"sspcab_{n}" in fields}
    rest = {k: v for k, v in fields.items() if k[len("sspcab_") :] not in block}
    return block, rest


def blocks_of(model, shape, **kwargs):
    """``{module path: SSPCAB module}`` of every block ``model`` calls on ``shape``."""
    found = {}

    def interceptor(next_fun, args, call_kwargs, context):
        if isinstance(context.module, SSPCAB) and context.method_name == "__call__":
            found["/".join(context.module.path)] = context.module
        return next_fun(*args, **call_kwargs)

    with nn.intercept_methods(interceptor):
        variable_paths(model, shape, **kwargs)
    return found


# --------------------------------------------------------------------------- variable names


@pytest.mark.parametrize("case", sorted(c for c in CASES if c.startswith("draem_")))
def test_draem_variable_paths_unchanged(case):
    block, rest = split_block_fields(CASES[case]["fields"], DRAEM_BLOCK)
    factory = functools.partial(default_sspcab(rest["sspcab_placement"]), **block)
    model = Draem(16, 8, sspcab=factory if block else None, **rest)
    assert variable_paths(model, (1, 64, 64, 3), train=False) == CASES[case]["paths"]


@pytest.mark.parametrize("case", sorted(c for c in CASES if c.startswith("ae_")))
def test_autoencoder_variable_paths_unchanged(case):
    block, rest = split_block_fields(CASES[case]["fields"], AE_BLOCK)
    rest["sspcab_positions"] = tuple(rest["sspcab_positions"])
    if isinstance(rest.get("sspcab_dilation"), dict):
        rest["sspcab_dilation"] = tuple(rest["sspcab_dilation"].items())
    channels = 3 if block else 1
    model = ConvAutoencoder(channels, sspcab=functools.partial(SSPCAB, **block), **rest)
    clip = (5,) if rest.get("spatial_dims") == 3 else ()
    shape = (1, *clip, 64, 64, 3) if block else (1, *clip, 32, 32, 1)
    assert variable_paths(model, shape) == CASES[case]["paths"]


def test_golden_file_covers_every_placement_and_position():
    assert {CASES[c]["fields"]["sspcab_placement"] for c in CASES if c.startswith("draem_")} == set(
        PLACEMENTS
    )
    ae = [CASES[c]["fields"]["sspcab_positions"] for c in CASES if c.startswith("ae_")]
    assert {p for positions in ae for p in positions} == set(POSITIONS)


# --------------------------------------------------------------------------- factory semantics


@pytest.mark.parametrize(
    "placement, activation", [("bottleneck", "none"), ("penultimate", "after_sum")]
)
def test_default_block_is_the_placement_sources(placement, activation):
    blocks = blocks_of(Draem(16, 8, sspcab_placement=placement), (1, 64, 64, 3), train=False)
    assert len(blocks) == (1 if placement == "bottleneck" else 2)
    assert {b.activation for b in blocks.values()} == {activation}
    assert {(b.kernel_size, b.dilation, b.reduction_ratio) for b in blocks.values()} == {(1, 1, 8)}


def test_factory_fields_reach_both_blocks_and_dtypes_follow_the_host():
    factory = functools.partial(SSPCAB, kernel_size=2, dilation=2, attention="transformer")
    model = Draem(16, 8, sspcab_placement="penultimate", sspcab=factory, dtype=jnp.bfloat16)
    blocks = blocks_of(model, (1, 64, 64, 3), train=False)
    assert sorted(blocks) == [
        "discriminative/dec_db4_1/sspcab",
        "reconstructive/dec_db4_1/sspcab",
    ]
    for block in blocks.values():
        assert (block.kernel_size, block.dilation, block.attention) == (2, 2, "transformer")
        assert block.activation == "after_sum"  # a given factory is used as given
        assert block.dtype == jnp.bfloat16 and block.param_dtype == jnp.float32


@pytest.mark.parametrize("field", ["dtype", "param_dtype", "name"])
def test_factory_fixing_a_host_field_is_rejected(field):
    factory = functools.partial(SSPCAB, **{field: "sspcab" if field == "name" else jnp.float16})
    model = Draem(8, 8, sspcab_placement="bottleneck", sspcab=factory)
    with pytest.raises(ValueError, match=rf"sets \['{field}'\].*remove them from the sspcab"):
        variable_paths(model, (1, 32, 32, 3), train=False)


def test_cbr_calls_the_factory_for_its_block():
    model = CBR(8, sspcab=functools.partial(SSPCAB, reduction_ratio=4, dilation=2))
    blocks = blocks_of(model, (1, 8, 8, 8), train=False)
    assert [(b.reduction_ratio, b.dilation) for b in blocks.values()] == [(4, 2)]
    with pytest.raises(ValueError, match="sees only zero padding"):
        variable_paths(model, (1, 3, 3, 8), train=False)


@pytest.mark.parametrize("spatial_dims, shape", [(2, (1, 32, 32, 1)), (3, (1, 5, 32, 32, 1))])
def test_autoencoder_sets_dilation_and_dimensionality(spatial_dims, shape):
    model = ConvAutoencoder(
        sspcab_positions=("early", "late"),
        sspcab=functools.partial(SSPCAB, kernel_size=2, attention="transformer"),
        sspcab_dilation={"late": 2},
        masked_centre=3,
        spatial_dims=spatial_dims,
    )
    blocks = blocks_of(model, shape)
    got = {p: (b.kernel_size, b.attention, b.dilation, b.spatial_dims) for p, b in blocks.items()}
    assert got == {
        "sspcab_early": (2, "transformer", 2, spatial_dims),
        "sspcab_late": (2, "transformer", 3, spatial_dims),
    }


@pytest.mark.parametrize("field", ["dilation", "spatial_dims"])
def test_autoencoder_rejects_a_factory_fixing_its_fields(field):
    model = ConvAutoencoder(
        sspcab_positions=("late",), sspcab=functools.partial(SSPCAB, **{field: 2})
    )
    with pytest.raises(ValueError, match=rf"ConvAutoencoder sets \['{field}'\]"):
        variable_paths(model, (1, 32, 32, 1))


# --------------------------------------------------------------------------- config translation


def test_config_block_fields_reach_the_blocks():
    from sspcab_jax.training.state import create_model

    config = default_config.get_config()
    config.draem.update(recon_width=16, disc_width=8, sspcab_placement="bottleneck")
    config.draem.update(sspcab_kernel_size=2, sspcab_dilation=2, sspcab_attention="transformer")
    blocks = blocks_of(create_model(config), (1, 64, 64, 3), train=False)
    got = {(b.kernel_size, b.dilation, b.attention, b.activation) for b in blocks.values()}
    assert got == {(2, 2, "transformer", "none")}  # the bottleneck default stays anomalib's

    config.model = "autoencoder"
    config.autoencoder.update(sspcab_positions=("late",), sspcab_kernel_size=3, masked_centre=3)
    blocks = blocks_of(create_model(config), (1, 32, 32, 1))
    assert [(b.kernel_size, b.dilation, b.attention) for b in blocks.values()] == [(3, 2, "se")]
