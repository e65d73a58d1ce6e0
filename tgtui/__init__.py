"""tgtui: the terminal dashboard of a tgfleet daemon."""
