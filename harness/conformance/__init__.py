"""The conformance kit's internals, one module per plugin kind; the public entry is `harness.testing`."""
