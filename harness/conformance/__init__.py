"""The conformance kit's internals, one module per plugin kind; the public entry is `harness.testing`.

Internal: plugin authors run these checks through `harness.testing`; this module may change between versions.
"""
