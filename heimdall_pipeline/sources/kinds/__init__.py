"""One module per source kind: a `sources.base.Source` subclass over its client or simulator,
registered in sources/registry.py."""
