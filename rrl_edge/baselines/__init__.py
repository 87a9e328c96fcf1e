"""Classical baselines on the same patches, so users see what the network buys them."""
