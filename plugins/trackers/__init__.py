"""Built-in matchbench plugins, registered through the `matchbench` entry-point group like any third party."""
