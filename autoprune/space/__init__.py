"""Search spaces: which groups are searched and over which ratios; sensitivity tables that narrow them."""
