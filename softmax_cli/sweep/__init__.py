"""`softmax sweep`: a grid of configurations, trained together on shared batches, and what it reports."""
