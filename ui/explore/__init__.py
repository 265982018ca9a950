"""What the Explore page draws beside the shared figures: result cards and modes, the per-GPU maps, one layer
up close, the A/B view, downloads. The maps, the layer and the A/B view are fragments: their own controls rerun them
alone."""
