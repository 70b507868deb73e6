"""mdc's built-in file formats, each an ordinary plug-in module registered by entry point."""
