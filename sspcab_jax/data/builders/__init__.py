"""TFDS dataset builders (importing a module registers its builder with TFDS)."""
