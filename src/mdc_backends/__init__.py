"""mdc's built-in storage backends, each an ordinary plug-in module registered by entry point."""
