"""Command-line entry points: thin wrappers that parse flags and call the library."""
