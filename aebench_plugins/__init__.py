"""aebench's built-in plugins, found through the ``aebench`` entry points like any third party's."""
