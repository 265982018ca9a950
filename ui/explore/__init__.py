"""What the Explore page draws beside the shared figures: result cards and modes, the A/B view, downloads."""
