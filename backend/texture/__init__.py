"""Baking photos (and generated views) into a head model's UV atlas; generic eye textures."""
