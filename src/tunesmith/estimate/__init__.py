"""Memory, time and cost estimates for a training run, from the model's config and the data."""
