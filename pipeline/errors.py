"""The one exception type for user mistakes: the CLI prints it as one line per problem and exits 2."""


class UserError(Exception):
    """A problem in the user's recipe, data, model or launch settings (not a bug)."""
