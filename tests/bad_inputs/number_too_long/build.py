"""An integer of 5000 digits: Python refuses to read it (more than 4300 digits); one line, not a traceback."""


def build(folder):
    text = (folder / "recipe.yaml").read_text()
    (folder / "recipe.yaml").write_text(text.replace("LONG", "1" * 5000))
