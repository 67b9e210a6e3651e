"""Built-in model-family plugins."""
