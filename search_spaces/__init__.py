"""What may be chosen: the hybrid search space and the reference zoo of published models."""
