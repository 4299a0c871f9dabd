"""One exception type for mistakes a user can fix, so entry points print it without a traceback."""


class UserError(Exception):
    """Bad input (config, data, CLI, hardware profile): the message says what, where and how to fix."""
