"""sspcab_jax.training."""
