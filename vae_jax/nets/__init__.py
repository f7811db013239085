"""Networks (flax.linen) and the models built from them, by name."""
