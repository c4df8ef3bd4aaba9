"""Data sets the package ships or reads."""
