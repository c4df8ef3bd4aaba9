"""Training of the embedded digits generator and classifier (CPU, minutes)."""
