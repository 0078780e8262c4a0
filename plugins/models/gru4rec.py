"""(being written: registers nothing yet)"""
from harness.plugin import hookimpl


@hookimpl
def register_models(register):
    pass
