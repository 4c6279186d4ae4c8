"""The exceptions ser raises for problems a user can fix."""


class SerError(Exception):
    """A problem with the user's input or setup; the CLI prints it without a traceback."""
