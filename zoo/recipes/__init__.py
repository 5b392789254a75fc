"""Recipes that reproduce the small weights zoo ships in `weights/`."""
