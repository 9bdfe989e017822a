"""A device farm: what every run records about where and from which build it ran
(:mod:`.meta`), and how stored runs are found by it."""
