"""Compatibility aliases: published BiGS snippets (`from BiGS.modeling_flax_bigs import ...`)
run unchanged on top of the `bigs` package."""
