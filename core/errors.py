"""The one exception type for user mistakes: the CLI prints it as one line per problem and exits 2."""


class UserError(Exception):
    """A problem in the user's recipe, data, model or launch settings (not a bug).

    Under a launcher, an error with `every_rank` set is raised by all ranks at the same point (they check the
    same recipe, or agreed to stop), so rank 0 alone prints it. Any other is printed by each rank that hits it:
    it may be that rank's alone (its files, its memory), and a rank that exits silently leaves nothing to read.
    """

    every_rank = False


def every_rank(err: UserError) -> UserError:
    """Mark `err` as raised by every rank alike (see UserError) and return it, for `raise every_rank(...)`."""
    err.every_rank = True
    return err
